#include "server/listener.hpp"

#include <chrono>

#include "common/log.hpp"
#include "server/access_log.hpp"
#include "server/readable_wait.hpp"
#include "server/relay.hpp"
#include "server/socket_options.hpp"
#include "server/worker.hpp"

namespace halfpipe {

namespace {

using namespace std::chrono_literals;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
// Out of descriptors, accept() fails again at once: pause instead of spinning,
// while the connections already open finish and give descriptors back.
constexpr auto resource_backoff = 100ms;
constexpr auto resource_log_interval = 1s;
// Connections taken in one go after a wake-up, at most: a flood of new ones must not
// keep the worker from relaying for the ones it has.
constexpr int max_accepts_per_wake = 64;

// Errors that concern one client only: take the next one at once.
bool is_per_connection(const boost::system::error_code& ec) {
    return ec == net::error::connection_aborted || ec == net::error::interrupted ||
           ec == boost::system::errc::protocol_error || ec == boost::system::errc::operation_not_permitted;
}

std::string_view accept_error_name(const boost::system::error_code& ec) {
    if (ec == boost::system::errc::too_many_files_open) return "emfile";
    if (ec == boost::system::errc::too_many_files_open_in_system) return "enfile";
    if (ec == boost::system::errc::no_buffer_space) return "enobufs";
    if (ec == boost::system::errc::not_enough_memory) return "enomem";
    return "other";
}

// Counts a new connection in and starts its session, or resets it when the listener
// is at max_connections.
void admit(worker& owner, listener_runtime& listener, tcp_socket socket, const tcp::endpoint& peer) {
    listener.metrics.accepted->Increment();
    // Count first, then check: workers accept concurrently and share the count.
    auto live_before = listener.live.fetch_add(1, std::memory_order_relaxed);
    if (listener.cfg.max_connections && live_before >= *listener.cfg.max_connections) {
        listener.live.fetch_sub(1, std::memory_order_relaxed);
        listener.metrics.rejected_max_connections->Increment();
        listener.metrics.closed_with({initiator::proxy, close_how::limit, "max_connections"});
        log_rejected(owner, listener, socket, {initiator::proxy, close_how::limit, "max_connections"});
        close_socket(socket, close_kind::abortive_rst);
        return;
    }
    auto& s = owner.open_session(listener, std::move(socket), peer);
    net::co_spawn(owner.context(), run_session(s), [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);  // a bug: every I/O outcome is a value in the relay
    });
}

}  // namespace

tcp::acceptor open_acceptor(net::io_context& context, const tcp::endpoint& endpoint,
                            const config::listener_config& cfg) {
    tcp::acceptor acceptor(context);
    acceptor.open(endpoint.protocol());
    acceptor.set_option(net::socket_base::reuse_address(true));
    set_reuse_port(acceptor);
    if (endpoint.address().is_v6()) acceptor.set_option(net::ip::v6_only(true));
    apply_listening_options(acceptor, cfg);
    acceptor.bind(endpoint);
    return acceptor;
}

net::awaitable<void> accept_loop(worker& owner, listener_runtime& listener, tcp::acceptor& acceptor) {
    net::steady_timer backoff(co_await net::this_coro::executor);
    tcp::endpoint peer;  // filled by accept4() itself: no getpeername() per connection
    boost::system::error_code ignored;
    acceptor.non_blocking(true, ignored);
    // Accepts before it waits: connections queued before the loop began raise no
    // new edge, and neither do those left when a round ends at its cap.
    for (;;) {
        // The connections already waiting are taken now, before any session relays:
        // the sessions connect one after another, and their first bytes leave
        // together (start_relay_soon in relay.cpp).
        boost::system::error_code ec;
        for (int taken = 0; taken < max_accepts_per_wake; ++taken) {
            tcp_socket socket(owner.context());
            ec = accept_non_blocking(acceptor, socket, peer);
            if (!ec) {
                admit(owner, listener, std::move(socket), peer);
            } else if (is_per_connection(ec)) {
                ec = {};
            } else {
                break;
            }
        }
        if (!ec) {
            // At the cap: the worker's sessions run before the next round.
            co_await net::post(co_await net::this_coro::executor, net::use_awaitable);
        } else if (ec == net::error::would_block || ec == net::error::try_again) {
            co_await wait_readable(acceptor);  // ends with operation_aborted when the acceptor closes
        } else {
            auto resource = accept_error_name(ec);
            listener.metrics.accept_error(resource);
            const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
            auto last = listener.last_accept_error_log.load(std::memory_order_relaxed);
            const auto interval = std::chrono::steady_clock::duration(resource_log_interval).count();
            if ((last == 0 || now - last >= interval) &&
                listener.last_accept_error_log.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
                log::get().warn("event=accept_error listener={} reason={} error=\"{}\" backoff_ms={}", listener.cfg.name,
                                resource, ec.message(), resource_backoff.count());
            }
            backoff.expires_after(resource_backoff);
            co_await backoff.async_wait(use_tuple);
        }
        // stop_accepting closes the acceptor between two rounds, never within one:
        // every connection accepted is admitted, and drained like the others.
        if (!acceptor.is_open()) co_return;
    }
}

}  // namespace halfpipe
