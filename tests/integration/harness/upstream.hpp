#pragma once
// A scripted test upstream: listens on 127.0.0.1:0 (or [::1]:0) and accepts in its
// own thread. Either each accepted connection runs a script (a handler) in its own
// thread, or, without a handler, connections queue up for the test to take with
// accept() and drive itself.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "harness/sockets.hpp"

namespace it {

class upstream {
public:
    // The script for one connection. It must finish by itself within bounded time
    // (use deadlines) and should return early once stop is requested.
    using handler = std::function<void(socket_fd conn, std::stop_token stop)>;

    explicit upstream(std::string host = "127.0.0.1", handler h = {}, int backlog = 128);
    ~upstream();
    upstream(const upstream&) = delete;
    upstream& operator=(const upstream&) = delete;

    std::uint16_t port() const noexcept { return port_; }
    std::string address() const;  // "127.0.0.1:PORT" or "[::1]:PORT", as halfpipe's --upstream wants
    std::size_t accepted() const noexcept { return accepted_.load(); }

    // Queue mode: the next accepted connection, or an empty socket after timeout.
    socket_fd accept(clock::duration timeout);
    // Waits until at least n connections were accepted in total.
    bool wait_accepted(std::size_t n, clock::duration timeout);
    // Stops accepting and closes the listening socket (new connects are refused).
    void stop_listening();

    // Ready-made scripts.
    static handler echo();  // echoes everything; at EOF, shuts down its sending side

private:
    void accept_loop(std::stop_token stop);

    std::string host_;
    socket_fd listener_;
    std::uint16_t port_ = 0;
    handler handler_;
    std::atomic<std::size_t> accepted_{0};
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<socket_fd> queue_;
    std::vector<std::jthread> workers_;  // one per connection in handler mode
    std::jthread acceptor_;              // declared last: stopped and joined first
};

}  // namespace it
