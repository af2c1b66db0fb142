#include "server/relay.hpp"

#include <netinet/tcp.h>

#include <chrono>

#include "common/log.hpp"
#include "server/access_log.hpp"
#include "server/deadlines.hpp"
#include "server/forward_tunnel.hpp"
#include "server/session.hpp"
#include "server/socket_options.hpp"
#include "server/upstream_connector.hpp"
#include "server/worker.hpp"

namespace halfpipe {

namespace {

using namespace std::chrono_literals;
using namespace net::experimental::awaitable_operators;
using clock = session::clock;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
// How often to look at the send queue while passing on a reset; only ever runs
// for connections that are being reset, for at most rst_flush.
constexpr auto flush_poll_interval = 2ms;

tcp::socket& source_of(session& s, direction d) { return d == to_upstream ? s.client : s.upstream; }
tcp::socket& sink_of(session& s, direction d) { return d == to_upstream ? s.upstream : s.client; }
direction opposite(direction d) { return d == to_upstream ? to_client : to_upstream; }
initiator source_side(direction d) { return d == to_upstream ? initiator::client : initiator::upstream; }

bool is_peer_reset(const boost::system::error_code& ec) {
    return ec == net::error::connection_reset || ec == net::error::broken_pipe;
}

void update_state(session& s) {
    if (s.terminating || (s.finished[to_upstream] && s.finished[to_client]))
        s.set_state(relay_state::closing);
    else if (s.finished[to_upstream])
        s.set_state(relay_state::client_fin);
    else if (s.finished[to_client])
        s.set_state(relay_state::upstream_fin);
    else
        s.set_state(relay_state::established);
}

// The source of direction d reset its connection. What it sent before the reset
// is delivered first (bounded by rst_flush), then the other peer is reset too:
// it must read ECONNRESET, never a clean EOF that would pass for success.
net::awaitable<void> pass_reset(session& s, direction d, clock::time_point deadline) {
    if (s.terminating) co_return;
    s.terminating = true;
    s.note_outcome({source_side(d), close_how::rst, d == to_upstream ? "client_reset" : "upstream_reset"});
    s.listener.metrics.resets_translated[d]->Increment();
    update_state(s);
    auto& sink = sink_of(s, d);
    net::steady_timer poll(co_await net::this_coro::executor);
    while ((s.writing[d] || unacked_bytes(sink) > 0) && clock::now() < deadline) {
        poll.expires_after(flush_poll_interval);
        auto [ec] = co_await poll.async_wait(use_tuple);
        if (ec) break;
    }
    close_socket(sink, close_kind::abortive_rst);
    close_socket(source_of(s, d), close_kind::abortive_rst);
}

net::awaitable<void> pass_reset(session& s, direction d) {
    co_await pass_reset(s, d, s.reset_seen[d] ? s.reset_deadline : clock::now() + s.listener.cfg.timeouts.rst_flush);
}

// Any other I/O failure (keepalive timeout, unreachable): end both sides the way
// the linger policy says.
void fail(session& s, direction d, const boost::system::error_code& ec) {
    if (!s.terminating) s.error = ec;
    s.terminate({source_side(d), close_how::error, "io_error"});
}

// A reset can arrive while nobody reads its socket: the direction it feeds is
// blocked writing to a peer that does not read, or finished after a FIN. So each
// socket is watched for errors for the whole session, and a reset is passed on
// at once. SO_ERROR tells a reset from the normal end of a connection, which the
// kernel also reports as a hang-up.
bool cancelled(net::cancellation_state state) { return state.cancelled() != net::cancellation_type::none; }

// A cancellation that arrives while a coroutine is between two waits is only
// recorded, not applied to the next wait: look at the record after every wait.
net::awaitable<bool> wait(net::awaitable<std::tuple<boost::system::error_code>> operation) {
    auto [ec] = co_await std::move(operation);
    net::cancellation_state state = co_await net::this_coro::cancellation_state;
    co_return !cancelled(state) && ec != net::error::operation_aborted;
}

net::awaitable<void> watch_for_reset(session& s, direction d) {
    co_await net::this_coro::throw_if_cancelled(false);
    auto& source = source_of(s, d);
    net::steady_timer pause(co_await net::this_coro::executor);
    auto park = [&]() -> net::awaitable<void> {
        // Another part of the session is ending it, perhaps still flushing before a
        // reset: returning now would cancel that, so wait to be cancelled instead.
        net::cancellation_state state = co_await net::this_coro::cancellation_state;
        if (cancelled(state)) co_return;
        pause.expires_at(clock::time_point::max());
        co_await wait(pause.async_wait(use_tuple));
    };
    for (;;) {
        if (!co_await wait(source.async_wait(tcp::socket::wait_error, use_tuple))) co_return;
        if (s.terminating) {
            co_await park();
            co_return;
        }
        const int error = take_socket_error(source);
        if ((error == ECONNRESET || error == EPIPE) && s.finished[d]) {
            co_await pass_reset(s, d);  // nothing left to read from that side
            co_await park();
            co_return;
        }
        if (error == ECONNRESET || error == EPIPE) {
            // The pump still reads what the peer sent before its RST, then passes the
            // reset on; if it is stuck writing to a peer that does not read, the
            // reset goes on anyway once rst_flush is over.
            s.reset_seen[d] = true;
            s.reset_deadline = clock::now() + s.listener.cfg.timeouts.rst_flush;
            pause.expires_at(s.reset_deadline);
            if (!co_await wait(pause.async_wait(use_tuple))) co_return;
            if (!s.terminating) co_await pass_reset(s, d, s.reset_deadline);
            co_await park();
            co_return;
        }
        if (error != 0) {
            fail(s, d, boost::system::error_code(error, boost::system::system_category()));
            co_await park();
            co_return;
        }
        // A hang-up after both FINs, or urgent data: nothing to do, and the level
        // stays set, so look again only after a pause instead of spinning.
        pause.expires_after(50ms);
        if (!co_await wait(pause.async_wait(use_tuple)) || s.terminating) {
            co_await park();
            co_return;
        }
    }
}

net::awaitable<void> on_eof(session& s, direction d) {
    auto& source = source_of(s, d);
    // A read of 0 after an RST whose error a write already collected: the kernel
    // reports a closed socket, not a half-closed one. Once we have sent our own FIN
    // on this socket, CLOSE is the normal end (TIME_WAIT) and no write is left
    // that could have collected an error.
    if (s.reset_seen[d] || (!s.finished[opposite(d)] && kernel_tcp_state(source) == TCP_CLOSE)) {
        co_await pass_reset(s, d);
        co_return;
    }
    boost::system::error_code ignored;
    sink_of(s, d).shutdown(tcp::socket::shutdown_send, ignored);
    s.finished[d] = true;
    s.note_outcome({source_side(d), close_how::fin, d == to_upstream ? "client_fin" : "upstream_fin"});
    if (!s.first_fin) s.first_fin = source_side(d);
    update_state(s);
    if (s.finished[opposite(d)]) co_return;
    s.half_closed_since = clock::now();
    s.listener.metrics.half_closes[d]->Increment();
    s.poke_watchdog();
}

net::awaitable<void> pump(session& s, direction d) {
    co_await net::this_coro::throw_if_cancelled(false);
    auto& source = source_of(s, d);
    auto& sink = sink_of(s, d);
    auto& pool = s.owner.pool(s.listener);
    for (;;) {
        // No buffer is held while waiting: an idle connection costs no relay memory.
        auto [wait_error] = co_await source.async_wait(tcp::socket::wait_read, use_tuple);
        if (s.terminating || wait_error == net::error::operation_aborted) co_return;
        auto lease = pool.borrow();
        auto buffer = lease.bytes();
        for (;;) {
            boost::system::error_code ec;
            std::size_t n = source.read_some(net::buffer(buffer.data(), buffer.size()), ec);
            if (ec == net::error::would_block || ec == net::error::try_again) break;
            if (ec == net::error::eof) {
                co_await on_eof(s, d);
                co_return;
            }
            if (is_peer_reset(ec)) {
                co_await pass_reset(s, d);
                co_return;
            }
            if (ec) {
                fail(s, d, ec);
                co_return;
            }
            s.bytes[d] += n;
            s.touch();
            s.writing[d] = true;
            auto [write_error, written] = co_await net::async_write(sink, net::buffer(buffer.data(), n), use_tuple);
            s.writing[d] = false;
            s.listener.metrics.bytes[d]->Increment(static_cast<double>(written));
            if (s.terminating) co_return;
            if (is_peer_reset(write_error)) {
                // The sink's peer reset: that is the source of the other direction.
                co_await pass_reset(s, opposite(d));
                co_return;
            }
            if (write_error) {
                fail(s, opposite(d), write_error);
                co_return;
            }
            s.touch();
        }
    }
}

relay_deadline next_deadline(const session& s) {
    if (s.terminating) return {};  // someone else is ending it
    return halfpipe::next_deadline(s.listener.cfg.timeouts, {s.started, s.last_activity, s.half_closed_since});
}

// Activity only stamps a time; the watchdog sleeps until the nearest deadline
// and re-checks, so the relay's hot path never touches a timer.
net::awaitable<void> watchdog(session& s) {
    co_await net::this_coro::throw_if_cancelled(false);
    net::steady_timer timer(co_await net::this_coro::executor);
    s.watchdog_timer = &timer;
    for (;;) {
        auto next = next_deadline(s);
        if (next.when <= clock::now()) {
            s.watchdog_timer = nullptr;
            s.terminate({initiator::proxy, close_how::timeout, next.reason});
            co_return;
        }
        timer.expires_at(next.when);
        auto [ec] = co_await timer.async_wait(use_tuple);
        auto cancelled = (co_await net::this_coro::cancellation_state).cancelled();
        if (cancelled != net::cancellation_type::none || (ec && !s.watchdog_rearm)) break;
        s.watchdog_rearm = false;
    }
    s.watchdog_timer = nullptr;
}

// The one place a session's end is accounted: counters, histograms, access log.
void finish(session& s) {
    auto& m = s.listener.metrics;
    const auto now = clock::now();
    m.closed_with(s.outcome.value_or(close_outcome{}));
    m.duration->Observe(std::chrono::duration<double>(now - s.started).count());
    m.transferred->Observe(static_cast<double>(s.bytes[to_upstream] + s.bytes[to_client]));
    if (s.half_closed_since)
        m.half_closed_duration->Observe(std::chrono::duration<double>(now - *s.half_closed_since).count());
    log_access(s);
}

// From an open upstream connection to the end of the session.
net::awaitable<void> relay(session& s) {
    apply_stream_options(s.upstream, s.listener.cfg);
    s.touch();
    update_state(s);

    // The pumps end together (both FINs) or through a reset or a timeout, each of
    // which closes both sockets; whichever of the others is still waiting is cancelled.
    co_await ((pump(s, to_upstream) && pump(s, to_client)) || watch_for_reset(s, to_upstream) ||
              watch_for_reset(s, to_client) || watchdog(s));

    if (!s.terminating) {
        // Both FINs passed on and every byte written: each socket is shut both ways.
        s.set_state(relay_state::closing);
        close_socket(s.client, close_kind::immediate);
        close_socket(s.upstream, close_kind::immediate);
    }
    finish(s);
}

struct live_count_guard {
    std::atomic<std::size_t>& live;
    ~live_count_guard() { live.fetch_sub(1, std::memory_order_relaxed); }
};

}  // namespace

net::awaitable<void> run_session(worker& owner, listener_runtime& listener, tcp::socket client) {
    // The accept loop counted this connection in before spawning us.
    live_count_guard counted{listener.live};
    session s(owner.next_session_id(), owner, listener, std::move(client));
    owner.sessions().push_back(s);
    apply_stream_options(s.client, listener.cfg);

    if (listener.cfg.mode != config::listener_mode::reverse) {
        if (!co_await open_forward_tunnel(s)) {
            finish(s);
            co_return;
        }
        co_await relay(s);
        co_return;
    }
    tcp::endpoint connected;
    auto result = co_await connect_upstream(listener, s.upstream, connected);
    if (!s.terminating && !result.ok) {
        s.terminating = true;
        s.error = result.error;
        s.note_outcome({initiator::upstream, close_how::error, result.reason});
        listener.metrics.connect_error(result.reason);
        s.set_state(relay_state::closing);
        close_socket(s.client, listener.cfg.upstream.connect_failure);
        close_socket(s.upstream, close_kind::abortive_rst);
    }
    if (s.terminating) {
        finish(s);
        co_return;
    }
    listener.metrics.connect_duration->Observe(std::chrono::duration<double>(clock::now() - s.started).count());
    s.upstream_endpoint = connected;
    listener.note_upstream(connected);
    co_await relay(s);
}

}  // namespace halfpipe
