#include "server/name_resolver.hpp"

#include <netinet/in.h>
#include <resolv.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

#include "common/thread_name.hpp"
#include "common/thread_signals.hpp"

namespace halfpipe {

namespace {
using namespace std::chrono_literals;
// A thread with nothing to do for this long leaves; the next busy moment starts another.
constexpr auto idle_thread_lifetime = 30s;
// A lookup's list of waiting sessions is swept of those that left whenever it doubles:
// while a name does not answer, sessions keep coming and timing out.
constexpr std::size_t first_sweep = 64;
}  // namespace

// One session waiting for a name; plain data, so whichever lets go last may free it
// on any thread.
struct name_resolver::waiter {
    net::any_io_executor executor;
    std::uint16_t port = 0;
    // Touched on the session's thread only: by the session, and by the answer,
    // which is posted there.
    net::steady_timer* wake = nullptr;  // null once the session stopped waiting
    bool answered = false;
    std::vector<tcp::endpoint> endpoints;
    boost::system::error_code error;
    std::atomic<bool> gone{false};  // the session stopped waiting: the sweep may drop it
};

// One name being looked up, for every session that asked for it meanwhile.
struct name_resolver::lookup {
    std::string host;
    std::vector<std::shared_ptr<waiter>> waiters;  // under shared::mutex
    std::size_t sweep_at = first_sweep;

    void join(std::shared_ptr<waiter> w) {
        if (waiters.size() >= sweep_at) {
            std::erase_if(waiters, [](const auto& x) { return x->gone.load(std::memory_order_relaxed); });
            sweep_at = std::max(first_sweep, 2 * waiters.size());
        }
        waiters.push_back(std::move(w));
    }
};

struct name_resolver::shared {
    shared(std::size_t max, std::optional<std::chrono::milliseconds> t) : max_threads(max), timeout(t) {}
    std::mutex mutex;
    std::condition_variable work;
    std::deque<std::shared_ptr<lookup>> queue;
    std::unordered_map<std::string, std::shared_ptr<lookup>> in_flight;  // queued or running, by name
    const std::size_t max_threads;
    const std::optional<std::chrono::milliseconds> timeout;
    std::size_t threads = 0;
    std::size_t idle = 0;
    bool open = true;  // false: answers go nowhere, threads leave
};

namespace {

// Bounds the next lookup of this thread to about `timeout`. glibc keeps the resolver
// state (_res) per thread: res_init() reloads resolv.conf into it (an edited file is
// honoured), then each server is given one try of an equal share, in whole seconds,
// its minimum; glibc leaves a state changed by hand as it is. The timing fields are
// zeroed first: res_init() keeps nonzero ones as set by hand, and the lookup after it
// then finds the state unlike resolv.conf and loads the file's timing over ours.
void bound_lookups(std::chrono::milliseconds timeout) {
    _res.retrans = 0;
    _res.retry = 0;
    if (::res_init() != 0) return;  // resolv.conf unreadable: glibc's defaults stand
    const auto servers = std::max(1, _res.nscount);
    const auto seconds = (timeout.count() + 999) / 1000;
    _res.retrans = static_cast<int>(std::max<long long>(1, (seconds + servers - 1) / servers));
    _res.retry = 1;
}

// Asio's own synchronous lookup, run on this thread: the same query flags and error
// codes as its asynchronous one. The io_context is only there to own the resolver;
// nothing runs it. Port 0: each waiting session puts in its own.
std::pair<std::vector<tcp::endpoint>, boost::system::error_code> lookup_now(const std::string& host) {
    thread_local net::io_context owner;
    thread_local tcp::resolver resolver(owner);
    boost::system::error_code error;
    std::vector<tcp::endpoint> endpoints;
    for (const auto& entry : resolver.resolve(host, "0", error)) endpoints.push_back(entry.endpoint());
    return {endpoints, error};
}

}  // namespace

void name_resolver::serve(const std::shared_ptr<shared>& state) {
    name_this_thread("halfpipe-dns");
    std::unique_lock lock(state->mutex);
    for (;;) {
        ++state->idle;
        const bool woken = state->work.wait_for(lock, idle_thread_lifetime,
                                                [&] { return !state->open || !state->queue.empty(); });
        --state->idle;
        if (!state->open) return;
        if (!woken) {
            --state->threads;
            return;
        }
        auto job = std::move(state->queue.front());
        state->queue.pop_front();
        lock.unlock();
        if (state->timeout) bound_lookups(*state->timeout);
        auto [endpoints, error] = lookup_now(job->host);
        lock.lock();
        if (!state->open) return;  // the io_contexts may be gone
        state->in_flight.erase(job->host);
        for (auto& w : job->waiters) {
            if (w->gone.load(std::memory_order_relaxed)) continue;
            auto answer = endpoints;
            for (auto& ep : answer) ep.port(w->port);
            net::post(w->executor, [w, answer = std::move(answer), error]() mutable {
                if (!w->wake) return;  // the session stopped waiting
                w->answered = true;
                w->endpoints = std::move(answer);
                w->error = error;
                w->wake->cancel();
            });
        }
    }
}

name_resolver::name_resolver(std::size_t max_threads, std::optional<std::chrono::milliseconds> timeout)
    : shared_(std::make_shared<shared>(max_threads, timeout)) {}

name_resolver::~name_resolver() {
    {
        std::lock_guard lock(shared_->mutex);
        shared_->open = false;
        shared_->queue.clear();
        shared_->in_flight.clear();
    }
    shared_->work.notify_all();
}

net::awaitable<std::vector<tcp::endpoint>> name_resolver::resolve(const std::string& host, std::uint16_t port,
                                                                  net::steady_timer& deadline,
                                                                  boost::system::error_code& error) {
    auto w = std::make_shared<waiter>();
    w->executor = co_await net::this_coro::executor;
    w->port = port;
    w->wake = &deadline;  // the answer is posted to this thread: it cannot come before the wait
    bool start_thread = false;
    {
        std::lock_guard lock(shared_->mutex);
        if (auto running = shared_->in_flight.find(host); running != shared_->in_flight.end()) {
            running->second->join(w);
        } else if (shared_->queue.size() >= max_queued) {
            error = net::error::host_not_found_try_again;
            co_return std::vector<tcp::endpoint>{};
        } else {
            auto job = std::make_shared<lookup>();
            job->host = host;
            job->join(w);
            shared_->in_flight.emplace(host, job);
            shared_->queue.push_back(std::move(job));
        }
        // Idle threads already woken for earlier names are still counted idle: compare
        // with the queue, not with zero. Checked for a joining session too: if a thread
        // could not be started for the name it joins, this is the next try.
        if (shared_->queue.size() > shared_->idle && shared_->threads < shared_->max_threads) {
            ++shared_->threads;
            start_thread = true;
        }
    }
    if (start_thread) {
        try {
            // Detached: a thread inside getaddrinfo must not hold up the shutdown.
            started_without_signals([&] { return std::thread([state = shared_] { serve(state); }); }).detach();
        } catch (const std::system_error&) {  // out of threads: a running one, or the next session's try, takes it
            std::lock_guard lock(shared_->mutex);
            --shared_->threads;
        }
    }
    shared_->work.notify_one();
    co_await deadline.async_wait(net::as_tuple(net::use_awaitable));
    w->wake = nullptr;
    w->gone.store(true, std::memory_order_relaxed);
    if (!w->answered) {
        error = net::error::timed_out;
        co_return std::vector<tcp::endpoint>{};
    }
    error = w->error;
    co_return std::move(w->endpoints);
}

}  // namespace halfpipe
