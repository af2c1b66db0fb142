#include "harness/upstream.hpp"

#include <poll.h>
#include <sys/socket.h>

namespace it {

upstream::upstream(std::string host, handler h, int backlog)
    : host_(std::move(host)), listener_(listen_tcp(host_, 0, backlog)), port_(local_port(listener_.get())),
      handler_(std::move(h)) {
    acceptor_ = std::jthread([this](std::stop_token stop) { accept_loop(stop); });
}

upstream::~upstream() {
    acceptor_.request_stop();
    if (acceptor_.joinable()) acceptor_.join();
    std::vector<std::jthread> workers;
    {
        std::lock_guard lock(mutex_);
        workers.swap(workers_);
    }
    for (auto& w : workers) w.request_stop();
    // jthread destructors join; every handler has bounded runtime.
}

std::string upstream::address() const {
    if (host_.find(':') != std::string::npos) return "[" + host_ + "]:" + std::to_string(port_);
    return host_ + ":" + std::to_string(port_);
}

void upstream::accept_loop(std::stop_token stop) {
    while (!stop.stop_requested()) {
        int lfd;
        {
            std::lock_guard lock(mutex_);
            lfd = listener_.get();
        }
        if (lfd < 0) return;
        pollfd p{lfd, POLLIN, 0};
        if (::poll(&p, 1, 20) <= 0) continue;
        socket_fd conn = accept_tcp(lfd, 0ms);
        if (!conn) continue;
        accepted_.fetch_add(1);
        std::lock_guard lock(mutex_);
        if (handler_) {
            workers_.emplace_back([h = handler_, c = std::move(conn)](std::stop_token st) mutable { h(std::move(c), st); });
        } else {
            queue_.push_back(std::move(conn));
        }
        cv_.notify_all();
    }
}

socket_fd upstream::accept(clock::duration timeout) {
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, timeout, [&] { return !queue_.empty(); })) return {};
    socket_fd s = std::move(queue_.front());
    queue_.pop_front();
    return s;
}

bool upstream::wait_accepted(std::size_t n, clock::duration timeout) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return accepted_.load() >= n; });
}

void upstream::stop_listening() {
    acceptor_.request_stop();
    if (acceptor_.joinable()) acceptor_.join();
    std::lock_guard lock(mutex_);
    listener_.reset();
}

upstream::handler upstream::echo() {
    return [](socket_fd conn, std::stop_token stop) {
        // Bounded: gives up after 60 s without an end, or when the test stops.
        const auto deadline = clock::now() + 60s;
        while (!stop.stop_requested() && clock::now() < deadline) {
            auto r = read_some(conn.get(), std::min(deadline, clock::now() + 50ms));
            if (!r.data.empty() && !write_all_ok(conn.get(), r.data, 10s)) return;
            if (r.end == read_end::eof) {
                shutdown_write(conn.get());
                // Wait for the other side to finish too, then close.
                read_until_end(conn.get(), std::min(deadline, clock::now() + 10s));
                return;
            }
            if (r.end == read_end::reset || r.end == read_end::error) return;
        }
    };
}

}  // namespace it
