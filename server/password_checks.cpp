#include "server/password_checks.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include "common/thread_name.hpp"
#include "common/thread_signals.hpp"

namespace halfpipe {

namespace {
// Hashing is CPU work that can wait: where the cores are busy, the relay comes first.
constexpr int password_nice = 10;
}  // namespace

password_checks::password_checks() : pool_(started_without_signals([] { return net::thread_pool(1); })) {
    // The pool's one thread runs this before any check; a nice value is per thread on Linux.
    net::post(pool_, [] {
        name_this_thread("halfpipe-auth");
        ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), password_nice);
    });
}

net::awaitable<password_checks::verdict> password_checks::check(forward::credential_verifier& verifier,
                                                                const std::string& user,
                                                                const std::string& password) {
    if (verifier.remembered(user, password)) co_return verdict::accepted;
    if (queued_.fetch_add(1, std::memory_order_relaxed) >= max_queued) {
        queued_.fetch_sub(1, std::memory_order_relaxed);
        co_return verdict::busy;
    }
    auto start = [this, &verifier, user, password](auto handler) {
        // The session's io_context must not run out of work while the hash runs elsewhere.
        auto work = net::make_work_guard(net::get_associated_executor(handler));
        net::post(pool_, [this, &verifier, user, password, work = std::move(work),
                          handler = std::move(handler)]() mutable {
            const bool ok = verifier.verify(user, password);
            queued_.fetch_sub(1, std::memory_order_relaxed);
            auto executor = work.get_executor();
            net::post(executor, [ok, handler = std::move(handler)]() mutable { std::move(handler)(ok); });
            work.reset();
        });
    };
    const bool ok =
        co_await net::async_initiate<decltype(net::use_awaitable), void(bool)>(std::move(start), net::use_awaitable);
    co_return ok ? verdict::accepted : verdict::rejected;
}

}  // namespace halfpipe
