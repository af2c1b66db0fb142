#include "server/name_resolver.hpp"

#include <thread>
#include <utility>

namespace halfpipe {

// What a session and a lookup thread share; plain data, so whichever lets go last
// may free it on any thread.
struct name_resolver::lookup {
    std::string host;
    std::string port;
    net::any_io_executor executor;
    // Touched on the session's thread only: by the session, and by the answer,
    // which is posted there.
    net::steady_timer* wake = nullptr;  // null once the session stopped waiting
    bool answered = false;
    std::vector<tcp::endpoint> endpoints;
    boost::system::error_code error;
};

struct name_resolver::shared {
    std::mutex mutex;
    std::condition_variable work;
    std::deque<std::shared_ptr<lookup>> queue;
    bool open = true;  // false: answers go nowhere, threads leave
};

namespace {

// Asio's own synchronous lookup, run on this thread: the same query flags and error
// codes as its asynchronous one. The io_context is only there to own the resolver;
// nothing runs it.
std::pair<std::vector<tcp::endpoint>, boost::system::error_code> lookup_now(const std::string& host,
                                                                             const std::string& port) {
    thread_local net::io_context owner;
    thread_local tcp::resolver resolver(owner);
    boost::system::error_code error;
    std::vector<tcp::endpoint> endpoints;
    for (const auto& entry : resolver.resolve(host, port, error)) endpoints.push_back(entry.endpoint());
    return {endpoints, error};
}

}  // namespace

name_resolver::name_resolver(std::size_t threads) : shared_(std::make_shared<shared>()) {
    for (std::size_t i = 0; i < threads; ++i) {
        // Detached: a thread inside getaddrinfo must not hold up the shutdown.
        std::thread([state = shared_] {
            for (;;) {
                std::shared_ptr<lookup> job;
                {
                    std::unique_lock lock(state->mutex);
                    state->work.wait(lock, [&] { return !state->open || !state->queue.empty(); });
                    if (!state->open) return;
                    job = std::move(state->queue.front());
                    state->queue.pop_front();
                }
                auto [endpoints, error] = lookup_now(job->host, job->port);
                std::lock_guard lock(state->mutex);
                if (!state->open) return;  // the io_contexts may be gone
                net::post(job->executor, [job, endpoints = std::move(endpoints), error]() mutable {
                    if (!job->wake) return;  // the session stopped waiting
                    job->answered = true;
                    job->endpoints = std::move(endpoints);
                    job->error = error;
                    job->wake->cancel();
                });
            }
        }).detach();
    }
}

name_resolver::~name_resolver() {
    {
        std::lock_guard lock(shared_->mutex);
        shared_->open = false;
        shared_->queue.clear();
    }
    shared_->work.notify_all();
}

net::awaitable<std::vector<tcp::endpoint>> name_resolver::resolve(const std::string& host, std::uint16_t port,
                                                                  net::steady_timer& deadline,
                                                                  boost::system::error_code& error) {
    auto job = std::make_shared<lookup>();
    job->host = host;
    job->port = std::to_string(port);
    job->executor = co_await net::this_coro::executor;
    job->wake = &deadline;  // the answer is posted to this thread: it cannot come before the wait
    {
        std::lock_guard lock(shared_->mutex);
        if (shared_->queue.size() >= max_queued) {
            job->wake = nullptr;
            error = net::error::host_not_found_try_again;
            co_return std::vector<tcp::endpoint>{};
        }
        shared_->queue.push_back(job);
    }
    shared_->work.notify_one();
    co_await deadline.async_wait(net::as_tuple(net::use_awaitable));
    job->wake = nullptr;
    if (!job->answered) {
        error = net::error::timed_out;
        co_return std::vector<tcp::endpoint>{};
    }
    error = job->error;
    co_return std::move(job->endpoints);
}

}  // namespace halfpipe
