#include "server/worker.hpp"

#include <algorithm>
#include <system_error>

#include "common/log.hpp"
#include "common/thread_cpu.hpp"
#include "common/thread_name.hpp"
#include "common/thread_signals.hpp"
#include "server/endpoint_text.hpp"
#include "server/listener.hpp"
#include "server/socket_options.hpp"

namespace halfpipe {

namespace {
// Enough to absorb a burst without returning memory to malloc on every connection.
constexpr std::size_t max_idle_buffers = 64;
// Each idle pipe holds two descriptors: keep fewer.
constexpr std::size_t max_idle_pipes = 16;
}  // namespace

worker::worker(std::size_t index, const std::vector<std::unique_ptr<listener_runtime>>& listeners,
               std::atomic<std::uint64_t>& session_ids, bool access_log)
    : index_(index), session_ids_(session_ids), access_log_(access_log) {
    for (const auto& l : listeners) {
        pools_.push_back(std::make_unique<buffer_pool>(l->cfg.buffer_size, max_idle_buffers));
        pipes_.push_back(std::make_unique<pipe_pool>(l->cfg.buffer_size, max_idle_pipes));
    }
}

worker::~worker() {
    sessions_.clear_and_dispose([](session* s) { delete s; });
}

session& worker::open_session(listener_runtime& listener, tcp_socket client, const tcp::endpoint& peer) {
    auto* s = new session(next_session_id(), *this, listener, std::move(client), peer);
    sessions_.push_back(*s);
    return *s;
}

void worker::add_acceptor(listener_runtime& listener, tcp::acceptor acceptor) {
    auto endpoint = acceptor.local_endpoint();
    acceptors_.push_back(std::make_unique<bound_acceptor>(bound_acceptor{&listener, std::move(acceptor), endpoint}));
}

void worker::run_accept_loop(bound_acceptor& a) {
    accept_loops_.fetch_add(1, std::memory_order_relaxed);
    net::co_spawn(context_, accept_loop(*this, *a.listener, a.acceptor), [this](std::exception_ptr e) {
        // Release: whoever sees the loop ended also sees the sessions it admitted.
        accept_loops_.fetch_sub(1, std::memory_order_release);
        if (e) std::rethrow_exception(e);  // a bug: the accept loop handles every I/O outcome itself
    });
}

void worker::start(std::optional<int> cpu) {
    for (auto& a : acceptors_) a->acceptor.listen(a->listener->cfg.backlog);
    for (auto& a : acceptors_) run_accept_loop(*a);
    thread_ = started_without_signals([this, cpu] {
        return std::thread([this, cpu] {
            name_this_thread("halfpipe-w" + std::to_string(index_));
            // Refused (a cpuset changed meanwhile, say): the worker runs where the kernel puts it.
            if (cpu && !bind_this_thread(*cpu))
                log::get().warn("event=cpu_affinity_failed worker={} cpu={}", index_, *cpu);
            context_.run();
        });
    });
}

void worker::stop_accepting() {
    net::post(context_, [this] {
        for (auto& a : acceptors_) {
            boost::system::error_code ignored;
            a->acceptor.close(ignored);
        }
    });
}

void worker::accept_again() {
    net::post(context_, [this] {
        // New entries: a closed acceptor's loop may not have seen its close yet, and
        // must not wake up on a new socket in the same place.
        const std::size_t first = current_acceptors_, closed = acceptors_.size();
        current_acceptors_ = closed;
        for (std::size_t i = first; i < closed; ++i) {
            auto* listener = acceptors_[i]->listener;
            const auto endpoint = acceptors_[i]->endpoint;
            try {
                auto acceptor = open_acceptor(context_, endpoint, listener->cfg);
                acceptor.listen(listener->cfg.backlog);
                acceptors_.push_back(
                    std::make_unique<bound_acceptor>(bound_acceptor{listener, std::move(acceptor), endpoint}));
                run_accept_loop(*acceptors_.back());
            } catch (const std::system_error& e) {
                log::get().error("event=listen_failed listener={} address={} error=\"{}\"", listener->cfg.name,
                                 endpoint_text(endpoint), e.what());
            }
        }
    });
}

void worker::terminate_all(close_outcome why) {
    net::post(context_, [this, why] {
        // terminate() only closes sockets; the sessions unlink themselves later.
        for (auto& s : sessions_) s.terminate(why);
    });
}

namespace {

// A few syscalls per socket: taken in slices so that the relay runs between them.
constexpr std::size_t snapshot_slice = 128;

session_snapshot snapshot(session& s, session::clock::time_point now) {
    session_snapshot snap;
    snap.id = s.id;
    snap.listener = s.listener.cfg.name;
    snap.client = endpoint_text(s.client_endpoint);
    snap.upstream = s.upstream_endpoint ? endpoint_text(*s.upstream_endpoint) : "-";
    snap.age_seconds = std::chrono::duration<double>(now - s.started).count();
    snap.bytes_to_upstream = s.bytes[to_upstream];
    snap.bytes_to_client = s.bytes[to_client];
    snap.state = to_string(s.state);
    snap.client_socket = snapshot_socket(s.client);
    snap.upstream_socket = snapshot_socket(s.upstream);
    return snap;
}

}  // namespace

net::awaitable<std::vector<session_snapshot>> worker::snapshot_sessions() {
    std::vector<session_snapshot> out;
    // Sessions join the list in id order and leave from anywhere, so the list stays
    // sorted by id: each slice resumes after the last id taken, whatever ended meanwhile.
    std::uint64_t after = 0;
    for (;;) {
        const auto now = session::clock::now();
        auto it = std::find_if(sessions_.begin(), sessions_.end(), [&](const session& s) { return s.id > after; });
        for (std::size_t taken = 0; it != sessions_.end() && taken < snapshot_slice; ++it, ++taken) {
            out.push_back(snapshot(*it, now));
            after = it->id;
        }
        if (it == sessions_.end()) co_return out;
        co_await net::post(context_, net::use_awaitable);
    }
}

net::awaitable<bool> worker::close_session(std::uint64_t id, close_kind how) {
    for (auto& s : sessions_) {
        if (s.id != id) continue;
        s.terminate({initiator::proxy, how == close_kind::graceful_fin ? close_how::fin : close_how::rst,
                     "admin_close"},
                    how);
        co_return true;
    }
    co_return false;
}

void worker::join() {
    guard_.reset();
    if (thread_.joinable()) thread_.join();
}

}  // namespace halfpipe
