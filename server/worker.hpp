#pragma once
// One thread, one io_context, its own SO_REUSEPORT acceptors and its own sessions:
// no socket is ever touched from two threads.
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "common/close_outcome.hpp"
#include "common/net.hpp"
#include "server/buffer_pool.hpp"
#include "server/pipe_pool.hpp"
#include "server/listener_runtime.hpp"
#include "server/session.hpp"
#include "server/session_snapshot.hpp"

namespace halfpipe {

class worker {
public:
    worker(std::size_t index, const std::vector<std::unique_ptr<listener_runtime>>& listeners,
           std::atomic<std::uint64_t>& session_ids, bool access_log);
    // Frees the sessions still open: their sockets need the io_context's services.
    ~worker();
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    net::io_context& context() noexcept { return context_; }
    std::size_t index() const noexcept { return index_; }

    void add_acceptor(listener_runtime& listener, tcp::acceptor acceptor);
    // Listens and runs the thread; on `cpu` alone when one is given.
    void start(std::optional<int> cpu);
    // Thread-safe: these post to the worker's own thread.
    void stop_accepting();
    // After stop_accepting: every address listens again, on new sockets (SO_REUSEPORT),
    // each with a new accept loop. An address that cannot be bound is logged and left.
    void accept_again();
    void terminate_all(close_outcome why);
    // Until every accept loop has ended, a connection whose accept completed as its
    // acceptor closed may still be admitted (listener.cpp). Thread-safe.
    bool accepting() const noexcept { return accept_loops_.load(std::memory_order_acquire) > 0; }
    void stop() { context_.stop(); }
    void join();

    // Run on the worker's own thread; the admin thread co_awaits them.
    net::awaitable<std::vector<session_snapshot>> snapshot_sessions();
    net::awaitable<bool> close_session(std::uint64_t id, close_kind how);

    buffer_pool& pool(const listener_runtime& listener) { return *pools_[listener.index]; }
    pipe_pool& pipes(const listener_runtime& listener) { return *pipes_[listener.index]; }
    session_list& sessions() noexcept { return sessions_; }
    // A new session for an accepted connection, linked into sessions(); freed with
    // delete by whoever ends it, or by ~worker.
    session& open_session(listener_runtime& listener, tcp_socket client, const tcp::endpoint& peer);
    std::uint64_t next_session_id() noexcept { return session_ids_.fetch_add(1, std::memory_order_relaxed) + 1; }
    bool access_log() const noexcept { return access_log_; }

private:
    struct bound_acceptor {
        listener_runtime* listener;
        tcp::acceptor acceptor;
        tcp::endpoint endpoint;  // what it was bound to, kept for accept_again
    };
    void run_accept_loop(bound_acceptor& a);

    std::size_t index_;
    std::atomic<std::uint64_t>& session_ids_;
    bool access_log_;
    // Declared before the context: destroying the context destroys suspended
    // coroutines, which still give buffers and pipes back.
    std::vector<std::unique_ptr<buffer_pool>> pools_;
    std::vector<std::unique_ptr<pipe_pool>> pipes_;
    session_list sessions_;
    // Only this thread touches its sockets and timers (others post to it), so the
    // reactor's per-descriptor locking is switched off; posting stays locked.
    net::io_context context_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    net::executor_work_guard<net::io_context::executor_type> guard_{context_.get_executor()};
    std::vector<std::unique_ptr<bound_acceptor>> acceptors_;
    std::size_t current_acceptors_ = 0;  // acceptors_ from here on are the newest set
    std::atomic<std::size_t> accept_loops_{0};
    std::thread thread_;
};

}  // namespace halfpipe
