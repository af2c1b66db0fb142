#include "server/relay.hpp"

#include <netinet/tcp.h>
#include <sys/epoll.h>

#include <chrono>
#include <optional>
#include <utility>

#include "common/log.hpp"
#include "server/access_log.hpp"
#include "server/deadlines.hpp"
#include "server/forward_tunnel.hpp"
#include "server/pipe_pool.hpp"
#include "server/readable_wait.hpp"
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
// Reads one direction makes in a row before it lets the worker's other connections run.
constexpr int max_reads_per_wake = 16;
// Wakes of a direction whose bytes were followed by a read that found nothing
// (EAGAIN) before its source socket has epoll report the peer's FIN apart
// (EPOLLRDHUP), which spares that read from then on (see on_readable). Not at
// once: a connection that carries one request each way would pay the
// EPOLL_CTL_MOD and never gain by it.
constexpr std::uint8_t empty_reads_before_fin_reports = 2;

tcp_socket& source_of(session& s, direction d) { return d == to_upstream ? s.client : s.upstream; }
tcp_socket& sink_of(session& s, direction d) { return d == to_upstream ? s.upstream : s.client; }
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

// A write of the other direction met the reset of d's source, and took its error.
// What that peer sent before the reset may still wait in the source: d reads it
// out and passes it on, then reads EOF from the closed socket, and passes the
// reset on (pass_fin), all within rst_flush. A pump of d that waits for its sink
// (and maybe its source, for this reset, which it can no longer see) is woken to
// take the deadline. Its waits are the only ones pending on the two sockets: the
// other direction is over.
void expect_reset(session& s, direction d) {
    if (!s.reset_seen[d]) {
        s.reset_seen[d] = true;
        s.reset_deadline = clock::now() + s.listener.cfg.timeouts.rst_flush;
    }
    if (s.writing[d]) {
        boost::system::error_code ignored;
        s.client.cancel(ignored);
        s.upstream.cancel(ignored);
    }
}

// Any other I/O failure (keepalive timeout, unreachable): end both sides the way
// the linger policy says.
void fail(session& s, direction d, const boost::system::error_code& ec) {
    if (!s.terminating) s.error = ec;
    s.terminate({source_side(d), close_how::error, "io_error"});
}

void arm_watchdog(session& s);

// Whether a reset may have come in before the wake with these events (0: unknown):
// the socket is closed then, which epoll reports as a hang-up (and an error, unless
// a write took it). One that comes after the wake raises a new edge, which
// watch_finished reads.
bool reset_may_precede(std::uint32_t events) { return events == 0 || (events & (EPOLLHUP | EPOLLERR)) != 0; }

// The source of d read as ended, on a wake with these events (0: unknown). Passes
// its FIN on; false when it was a reset instead, which the caller passes on.
bool pass_fin(session& s, direction d, std::uint32_t events) {
    auto& source = source_of(s, d);
    // A read of 0 after an RST whose error a write already collected: the kernel
    // reports a closed socket, not a half-closed one. Once we have sent our own FIN
    // on this socket, CLOSE is the normal end (TIME_WAIT) and no write is left
    // that could have collected an error.
    if (s.reset_seen[d]) return false;
    if (!s.finished[opposite(d)] && reset_may_precede(events) && kernel_tcp_state(source) == TCP_CLOSE) return false;
    // When the other direction is over already, the close that ends the session
    // right after sends this FIN: every byte was read, so the kernel sends no RST.
    if (!s.finished[opposite(d)]) {
        boost::system::error_code ignored;
        sink_of(s, d).shutdown(tcp::socket::shutdown_send, ignored);
    }
    s.finished[d] = true;
    s.note_outcome({source_side(d), close_how::fin, d == to_upstream ? "client_fin" : "upstream_fin"});
    if (!s.first_fin) s.first_fin = source_side(d);
    update_state(s);
    if (s.finished[opposite(d)]) return true;
    s.half_closed_since = clock::now();
    s.listener.metrics.half_closes[d]->Increment();
    arm_watchdog(s);  // the half-close deadline may be the nearest now
    return true;
}

relay_deadline next_deadline(const session& s) {
    if (s.terminating) return {};  // someone else is ending it
    return halfpipe::next_deadline(s.listener.cfg.timeouts, {s.started, s.last_activity, s.half_closed_since});
}

// Activity only stamps a time; the watchdog sleeps until the nearest deadline and
// re-checks, so the relay's hot path never touches a timer. A plain handler on the
// session's timer, not a coroutine: an idle connection carries no frame for it.
// The session outlives every handler it arms (see end_relay), so the handler
// may always look at it.
void arm_watchdog(session& s) {
    const auto next = next_deadline(s);
    if (next.when == clock::time_point::max()) return;
    s.watchdog.expires_at(next.when);  // cancels the wait armed before, if any
    ++s.watchdog_waits;
    s.watchdog.async_wait([&s](const boost::system::error_code& ec) {
        --s.watchdog_waits;
        if (ec || s.terminating) return;  // re-armed or stopped
        const auto due = next_deadline(s);
        if (due.when <= clock::now())
            s.terminate({initiator::proxy, close_how::timeout, due.reason});
        else
            arm_watchdog(s);
    });
}

// The sink is full. Meanwhile a reset can arrive from the source, and nobody
// reads the source while its pump is stuck: so the source is watched for errors
// in the same wait. After a reset the bytes it sent before still leave, until
// rst_flush is over; then the reset is passed on anyway. False: the pump stops.
//
// The kernel reports a hang-up (both ways shut: its FIN came after ours) and
// pending urgent data for as long as they last, and every such wait re-arms epoll
// (EPOLL_CTL_MOD), which reports them again at once: watching on would spin. So
// a wake that was no error ends the watch for the rest of the drain
// (watch_source); a reset is then seen when the source is read again.
net::awaitable<bool> wait_for_sink(session& s, direction d, bool& watch_source) {
    auto& source = source_of(s, d);
    auto& sink = sink_of(s, d);
    if (s.reset_seen[d]) {
        net::steady_timer flush_deadline(co_await net::this_coro::executor, s.reset_deadline);
        auto result = co_await (sink.async_wait(tcp::socket::wait_write, use_tuple) ||
                                flush_deadline.async_wait(use_tuple));
        if (s.terminating) co_return false;
        if (result.index() == 1) {
            co_await pass_reset(s, d, s.reset_deadline);
            co_return false;
        }
        co_return true;
    }
    if (!watch_source) {
        co_await sink.async_wait(tcp::socket::wait_write, use_tuple);
        co_return !s.terminating;
    }
    auto result = co_await (sink.async_wait(tcp::socket::wait_write, use_tuple) ||
                            source.async_wait(tcp::socket::wait_error, use_tuple));
    if (s.terminating) co_return false;
    if (result.index() == 0) co_return true;
    // SO_ERROR tells a reset from the other events the kernel reports as errors.
    const int error = take_socket_error(source);
    if (error == ECONNRESET || error == EPIPE) {
        s.reset_seen[d] = true;
        s.reset_deadline = clock::now() + s.listener.cfg.timeouts.rst_flush;
    } else if (error != 0) {
        fail(s, d, boost::system::error_code(error, boost::system::system_category()));
        co_return false;
    } else {
        watch_source = false;
    }
    co_return true;
}

// Bytes move from a source to a sink through a channel borrowed for as long as
// they move: a pooled buffer (copy), or a kernel pipe that splice(2) fills and
// drains without copying the bytes through user space.
class copy_channel {
public:
    static constexpr bool splices = false;
    explicit copy_channel(session& s) : lease_(s.owner.pool(s.listener).borrow()) {}
    explicit operator bool() const noexcept { return true; }

    std::size_t read(tcp_socket& source, boost::system::error_code& ec) {
        auto buffer = lease_.bytes();
        offset_ = 0;
        pending_ = source.read_some(net::buffer(buffer.data(), buffer.size()), ec);
        return pending_;
    }
    std::size_t write(tcp_socket& sink, boost::system::error_code& ec) {
        const std::size_t n = sink.write_some(net::buffer(lease_.bytes().data() + offset_, pending_), ec);
        offset_ += n;
        pending_ -= n;
        return n;
    }
    std::size_t pending() const noexcept { return pending_; }
    std::size_t capacity() const noexcept { return lease_.bytes().size(); }

private:
    buffer_pool::lease lease_;
    std::size_t offset_ = 0;
    std::size_t pending_ = 0;
};

class splice_channel {
public:
    static constexpr bool splices = true;
    explicit splice_channel(session& s) : pool_(&s.owner.pipes(s.listener)), lease_(pool_->borrow()) {}
    // False when the kernel would not make a pipe (out of descriptors).
    explicit operator bool() const noexcept { return static_cast<bool>(lease_); }

    std::size_t read(tcp_socket& source, boost::system::error_code& ec) {
        const auto n = splice_from_socket(source.native_handle(), lease_.pipe(), pool_->capacity());
        if (n == 0) ec = net::error::eof;
        lease_.pending = moved(n, ec);
        return lease_.pending;
    }
    std::size_t write(tcp_socket& sink, boost::system::error_code& ec) {
        const auto n = moved(splice_to_socket(lease_.pipe(), sink.native_handle(), lease_.pending), ec);
        lease_.pending -= n;
        return n;
    }
    std::size_t pending() const noexcept { return lease_.pending; }
    std::size_t capacity() const noexcept { return pool_->capacity(); }

private:
    static std::size_t moved(ssize_t n, boost::system::error_code& ec) {
        if (n >= 0) return static_cast<std::size_t>(n);
        ec.assign(static_cast<int>(-n), boost::system::system_category());
        return 0;
    }
    pipe_pool* pool_;
    pipe_pool::lease lease_;
};

bool would_block(const boost::system::error_code& ec) {
    return ec == net::error::would_block || ec == net::error::try_again;
}

// splice(2) refuses sockets it cannot handle, and kernels without it refuse the call.
bool cannot_splice(const boost::system::error_code& ec) {
    return ec == boost::system::errc::invalid_argument || ec == boost::system::errc::function_not_supported;
}

// One write of what the channel holds. What leaves is what counts, in the session
// (access log) as in the metric: bytes read from a source whose sink then reset
// were never relayed.
template <typename Channel>
void write_counted(session& s, direction d, Channel& channel, boost::system::error_code& ec) {
    const std::size_t written = channel.write(sink_of(s, d), ec);
    if (written == 0) return;
    s.bytes[d] += written;
    s.listener.metrics.bytes[d]->Increment(static_cast<double>(written));
}

// How one wake of a direction ended.
enum class drained {
    more,         // the source has nothing more for now: wait for it again
    eof,          // the source sent its FIN
    copy_instead,  // the kernel cannot splice this socket; nothing was taken
    over,         // the session is ending
};

// What the callback path already did with its last read before it handed over
// to drain(): the read (and, if it brought bytes, counted them and one write).
struct handover {
    std::size_t n = 0;
    boost::system::error_code read_error;
    boost::system::error_code write_error;
};

// One wake of a direction: bytes move until the source has no more for now. This
// frame, with the channel, lives only while bytes move: an idle or finished
// direction holds no buffer and no pipe.
template <typename Channel>
net::awaitable<drained> drain(session& s, direction d, Channel channel, handover h) {
    auto& source = source_of(s, d);
    int reads = 0;
    bool watch_source = true;  // see wait_for_sink
    for (bool handed_over = true;; handed_over = false) {
        boost::system::error_code ec = handed_over ? h.read_error : boost::system::error_code();
        if (!handed_over) channel.read(source, ec);  // the channel keeps what it holds
        if (would_block(ec)) co_return drained::more;
        if (Channel::splices && cannot_splice(ec)) co_return drained::copy_instead;
        if (ec == net::error::eof) co_return drained::eof;
        if (is_peer_reset(ec)) {
            co_await pass_reset(s, d);
            co_return drained::over;
        }
        if (ec) {
            fail(s, d, ec);
            co_return drained::over;
        }
        if (!handed_over) s.touch();
        // The wait when the sink is full also watches the source for a reset.
        ec = handed_over ? h.write_error : boost::system::error_code();
        bool suspended = false;
        s.writing[d] = true;
        for (;;) {
            if (would_block(ec)) {
                ec = {};
                suspended = true;
                if (!co_await wait_for_sink(s, d, watch_source)) break;  // the session is ending
            }
            if (ec || channel.pending() == 0) break;
            write_counted(s, d, channel, ec);
        }
        s.writing[d] = false;
        if (s.terminating) co_return drained::over;
        if (is_peer_reset(ec)) {
            // The sink's peer reset: it is the source of the other direction.
            if (s.finished[opposite(d)])
                co_await pass_reset(s, opposite(d));  // which read it to its FIN: nothing is left
            else
                expect_reset(s, opposite(d));
            co_return drained::over;
        }
        if (ec) {
            fail(s, opposite(d), ec);
            co_return drained::over;
        }
        if (suspended) s.touch();
        // Read on until the source says it has nothing more (EAGAIN): the wait that
        // follows sleeps until the next edge, and a FIN that came with these bytes
        // raises none. A source that never runs dry lets the worker's other
        // connections in now and then.
        if (++reads == max_reads_per_wake) {
            reads = 0;
            co_await net::post(co_await net::this_coro::executor, net::use_awaitable);
            if (s.terminating) co_return drained::over;
        }
    }
}

// The two directions of an established session run on plain handlers. An idle
// direction is one pending wait: no coroutine frame, no buffer. A wake whose bytes
// the sink takes at once is handled right in that handler; anything else (a full
// sink, a full read, a FIN, a reset, an error) goes on in drain(), a coroutine for
// as long as it takes. Neither direction cancels the other (half-close!); a reset,
// an error or a timeout closes both sockets, which ends whatever either still
// waits for. The last direction over ends the session.

void end_relay(session& s);

void direction_over(session& s) {
    if (--s.directions_running > 0) return;
    // Posted, never run in place: ending frees the session, and whoever called us
    // still has it in hand.
    net::post(s.client.get_executor(), [&s] { end_relay(s); });
}

template <typename Channel>
void on_readable(session& s, direction d, const boost::system::error_code& wait_error, std::uint32_t events);

template <typename Channel>
void await_readable(session& s, direction d) {
    // The wait also ends on an error or a hang-up, so a reset is seen here too.
    async_wait_readable(source_of(s, d), [&s, d](const boost::system::error_code& ec, std::uint32_t events) {
        on_readable<Channel>(s, d, ec, events);
    });
}

// A wake of d brought bytes, and then a read that found nothing.
void note_empty_read(session& s, direction d) {
    if (s.empty_reads[d] == empty_reads_before_fin_reports) return;
    if (++s.empty_reads[d] == empty_reads_before_fin_reports) report_peer_fin(source_of(s, d));
}

void run_to_end(session& s, net::awaitable<void> rest) {
    net::co_spawn(s.client.get_executor(), std::move(rest), [&s](std::exception_ptr e) {
        direction_over(s);
        if (e) std::rethrow_exception(e);  // a bug: every I/O outcome is a value
    });
}

// After its FIN nobody reads the source, yet it can still reset, which must be
// passed on at once. The source read EOF, so what wakes the wait is an error, a
// hang-up or a stale edge, which SO_ERROR tells apart. Ends when the other
// direction finishes too (and closes the sockets) or the session ends.
void watch_finished(session& s, direction d) {
    async_wait_readable(source_of(s, d), [&s, d](const boost::system::error_code& ec, std::uint32_t) {
        if (ec || s.terminating || s.finished[opposite(d)]) return direction_over(s);
        const int error = take_socket_error(source_of(s, d));
        if (error == ECONNRESET || error == EPIPE) return run_to_end(s, pass_reset(s, d));
        if (error != 0) {
            fail(s, d, boost::system::error_code(error, boost::system::system_category()));
            return direction_over(s);
        }
        watch_finished(s, d);
    });
}

// The source of d sent its FIN (read on a wake with these events, 0: unknown):
// pass it on, then watch that source for a reset until the other direction is
// over too.
void end_of_source(session& s, direction d, std::uint32_t events) {
    if (s.terminating) return direction_over(s);
    if (!pass_fin(s, d, events)) return run_to_end(s, pass_reset(s, d));
    if (s.finished[opposite(d)]) {
        // Both FINs passed on, every byte written: the connection is over. The sockets
        // close now (the second FIN leaves with this close), which also ends the other
        // direction's watch; the watchdog ends with it, so that every handler still
        // pending on the session runs in the same turn of the loop.
        s.terminating = true;  // a watchdog wake already queued must not time it out now
        s.watchdog.cancel();
        close_socket(s.client, close_kind::immediate);
        close_socket(s.upstream, close_kind::immediate);
        return direction_over(s);
    }
    watch_finished(s, d);
}

template <typename Channel>
void after_drain(session& s, direction d, drained outcome) {
    switch (outcome) {
        case drained::more: await_readable<Channel>(s, d); return;
        case drained::eof: end_of_source(s, d, 0); return;
        // This direction copies from now on; the source has news already.
        case drained::copy_instead: on_readable<copy_channel>(s, d, {}, 0); return;
        case drained::over: direction_over(s); return;
    }
}

// events: what epoll reported for the wake, 0 when unknown (the first read, or
// handed over from elsewhere).
template <typename Channel>
void on_readable(session& s, direction d, const boost::system::error_code& wait_error, std::uint32_t events) {
    if (s.terminating || wait_error == net::error::operation_aborted) {
        direction_over(s);
        return;
    }
    Channel channel(s);
    if (!channel) {
        // No pipe to be had (out of descriptors): this direction copies from now on.
        on_readable<copy_channel>(s, d, wait_error, events);
        return;
    }
    auto& source = source_of(s, d);
    // A splice stops short when the pipe's slots run out, not only when the source
    // does: it always reads on to EAGAIN.
    const bool short_read_drains = !Channel::splices && nothing_left_after_short_read(source, events);
    handover h;
    // Until the source has nothing more for now (EAGAIN): the wait that follows
    // sleeps until the next edge, and a FIN that came with the last bytes raises
    // none. Unless the wake's events prove that a short read took everything.
    for (int reads = 1;; ++reads) {
        h = handover{};
        h.n = channel.read(source, h.read_error);
        if (would_block(h.read_error)) {
            // A splice reads on to EAGAIN whatever epoll reports: no use asking it for more.
            if (reads > 1 && !Channel::splices) note_empty_read(s, d);
            return await_readable<Channel>(s, d);
        }
        if (h.read_error == net::error::eof) return end_of_source(s, d, events);
        if (h.read_error) break;
        s.touch();
        write_counted(s, d, channel, h.write_error);
        // A full read, a sink that did not take it all, or a source that keeps
        // trickling: drain() takes over.
        if (h.write_error || channel.pending() > 0 || h.n == channel.capacity() || reads == max_reads_per_wake)
            break;
        if (short_read_drains) return await_readable<Channel>(s, d);
    }
    net::co_spawn(s.client.get_executor(), drain<Channel>(s, d, std::move(channel), h),
                  [&s, d](std::exception_ptr e, drained outcome) {
                      if (e) std::rethrow_exception(e);  // a bug: every I/O outcome is a value
                      after_drain<Channel>(s, d, outcome);
                  });
}

template <typename Channel>
void start_both(session& s) {
    s.directions_running = 2;
    // Read before waiting, both ways: the client's first bytes are usually there
    // already, and a server that speaks first may have spoken. Every wait follows a
    // read that found nothing more (see readable_wait.hpp).
    on_readable<Channel>(s, to_upstream, {}, 0);
    on_readable<Channel>(s, to_client, {}, 0);
}

// The one place a session's end is accounted (counters, histograms, access log)
// and the session freed.
void retire(session& s) {
    auto& m = s.listener.metrics;
    const auto now = clock::now();
    m.closed_with(s.outcome.value_or(close_outcome{}));
    m.duration->Observe(std::chrono::duration<double>(now - s.started).count());
    m.transferred->Observe(static_cast<double>(s.bytes[to_upstream] + s.bytes[to_client]));
    if (s.half_closed_since)
        m.half_closed_duration->Observe(std::chrono::duration<double>(now - *s.half_closed_since).count());
    log_access(s);
    delete &s;
}

void end_relay(session& s) {
    s.watchdog.cancel();
    if (s.watchdog_waits > 0) {
        // A cancelled (or already expired) wait still runs its handler, which needs
        // the session: it is queued now, so come back after it.
        net::post(s.client.get_executor(), [&s] { end_relay(s); });
        return;
    }
    // Closed already: by whoever set terminating, or by end_of_source at the second FIN.
    retire(s);
}

// From an open upstream connection on, the session runs on handlers alone.
void start_relay(session& s) {
    if (s.terminating) {
        retire(s);
        return;
    }
    apply_stream_options(s.upstream, s.listener.cfg);
    s.touch();
    update_state(s);
    arm_watchdog(s);
    if (s.listener.cfg.relay == config::relay_mode::splice)
        start_both<splice_channel>(s);
    else
        start_both<copy_channel>(s);
}

// The relay starts once the worker has taken, and connected, every connection that
// was waiting to be accepted (see accept_loop): the upstream then finds several new
// connections and their first bytes per wake-up, instead of waking up for each.
void start_relay_soon(session& s) {
    net::post(s.client.get_executor(), [&s] { start_relay(s); });
}

}  // namespace

net::awaitable<void> run_session(session& s) {
    auto& listener = s.listener;

    if (listener.cfg.mode != config::listener_mode::reverse) {
        if (!co_await open_forward_tunnel(s)) {
            retire(s);
            co_return;
        }
        start_relay_soon(s);
        co_return;
    }
    tcp::endpoint connected;
    auto result = co_await connect_upstream(listener, s.upstream, connected, s.terminating);
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
        retire(s);
        co_return;
    }
    listener.metrics.connect_duration->Observe(std::chrono::duration<double>(clock::now() - s.started).count());
    s.upstream_endpoint = connected;
    listener.note_upstream(connected);
    start_relay_soon(s);
}

}  // namespace halfpipe
