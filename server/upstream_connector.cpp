#include "server/upstream_connector.hpp"

#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>

#include "server/name_resolver.hpp"
#include "server/socket_options.hpp"

namespace halfpipe {

namespace {

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

std::string_view classify(const boost::system::error_code& ec) {
    if (ec == net::error::connection_refused) return "connect_refused";
    if (ec == net::error::timed_out) return "connect_timeout";
    if (ec == net::error::network_unreachable || ec == net::error::host_unreachable) return "connect_unreachable";
    // The kernel found no free (address, port) tuple toward this upstream.
    if (ec == boost::system::errc::address_not_available) return "port_exhausted";
    return "connect_error";
}

net::awaitable<std::vector<tcp::endpoint>> resolve(listener_runtime& listener, const upstream_target& target,
                                                   net::steady_timer& deadline, boost::system::error_code& error) {
    boost::system::error_code not_literal;
    auto literal = net::ip::make_address(target.host, not_literal);
    if (!not_literal) co_return std::vector<tcp::endpoint>{tcp::endpoint(literal, target.port)};
    co_return co_await listener.resolver->resolve(target.host, target.port, deadline, error);
}

// The connect, cut off when `deadline` expires: a plain handler on the timer
// cancels it, which is lighter than racing two coroutines in a parallel group.
// connect(2) and a wait for writability, then SO_ERROR: Asio's async_connect adds a
// poll() before it reads SO_ERROR, and always waits.
net::awaitable<boost::system::error_code> connect_before(tcp_socket& socket, const tcp::endpoint& endpoint,
                                                         net::steady_timer& deadline) {
    if (::connect(socket.native_handle(), endpoint.data(), static_cast<socklen_t>(endpoint.size())) == 0)
        co_return boost::system::error_code();
    if (errno != EINPROGRESS) co_return boost::system::error_code(errno, boost::system::system_category());
    // Toward a local upstream the handshake (or the refusal) is over before connect()
    // returns: the kernel runs the peer's side of loopback within the call. Then
    // there is nothing to wait for, and the request leaves at once.
    switch (kernel_tcp_state(socket).value_or(TCP_SYN_SENT)) {
        case TCP_ESTABLISHED:
        case TCP_CLOSE_WAIT:  // accepted, and the upstream's FIN is in already
            co_return boost::system::error_code();
        case TCP_CLOSE:
            if (const int error = take_socket_error(socket))
                co_return boost::system::error_code(error, boost::system::system_category());
            break;
        default: break;
    }
    net::cancellation_signal cut_off;
    bool expired = false;
    deadline.async_wait([&](const boost::system::error_code& ec) {
        if (ec) return;
        expired = true;
        cut_off.emit(net::cancellation_type::terminal);
    });
    auto [ec] = co_await socket.async_wait(tcp::socket::wait_write,
                                           net::bind_cancellation_slot(cut_off.slot(), use_tuple));
    if (!ec) {
        if (const int error = take_socket_error(socket)) ec.assign(error, boost::system::system_category());
    }
    // The handler refers to this frame: let it run (cancelled, or expired just
    // now) before the frame goes.
    deadline.cancel();
    co_await net::post(co_await net::this_coro::executor, net::use_awaitable);
    if (expired) co_return net::error::timed_out;
    co_return ec;
}

}  // namespace

net::awaitable<connect_result> connect_upstream(listener_runtime& listener, tcp_socket& socket,
                                                tcp::endpoint& connected_to, const bool& abandoned) {
    const auto& configured = listener.cfg.upstream.address;
    // Named, not a temporary: GCC 12 mishandles temporaries that live across a co_await.
    const upstream_target target{configured.host, configured.port};
    const endpoint_filter any_address;
    co_return co_await connect_upstream(listener, target, socket, connected_to, abandoned, any_address);
}

net::awaitable<connect_result> connect_upstream(listener_runtime& listener, const upstream_target& target,
                                                tcp_socket& socket, tcp::endpoint& connected_to,
                                                const bool& abandoned, const endpoint_filter& allowed) {
    net::steady_timer deadline(co_await net::this_coro::executor, listener.cfg.timeouts.connect);
    // The configured upstream given as an IP literal: its address is known already.
    const auto& configured = listener.cfg.upstream.address;
    const bool known = !listener.upstream_literal.empty() && target.host == configured.host &&
                       target.port == configured.port;
    std::vector<tcp::endpoint> resolved;
    if (!known) {
        boost::system::error_code resolve_error;
        resolved = co_await resolve(listener, target, deadline, resolve_error);
        if (resolved.empty()) {
            if (resolve_error == net::error::timed_out)
                co_return connect_result{false, "connect_timeout", resolve_error};
            co_return connect_result{false, "resolve_failed", resolve_error};
        }
    }
    const auto& endpoints = known ? listener.upstream_literal : resolved;
    // A name is only as allowed as every address it resolves to: no DNS-rebinding bypass.
    if (allowed)
        for (const auto& endpoint : endpoints)
            if (!allowed(endpoint))
                co_return connect_result{false, "destination_denied", net::error::access_denied};

    const connect_result aborted{false, "aborted", net::error::operation_aborted};
    boost::system::error_code last_error;
    for (const auto& endpoint : endpoints) {
        if (abandoned) co_return aborted;
        boost::system::error_code ec;
        if (socket.is_open()) socket.close(ec);
        // Non-blocking from the start, so that neither the connect nor the relay
        // switches it on with a syscall of its own.
        ec = open_non_blocking(socket, endpoint.protocol());
        if (ec) {
            last_error = ec;
            continue;
        }
        if (listener.source_address) {
            if (listener.source_address->is_v6() != endpoint.address().is_v6()) continue;
            set_bind_address_no_port(socket);
            socket.bind(tcp::endpoint(*listener.source_address, 0), ec);
            if (ec) {
                last_error = ec;
                continue;
            }
        }
        const auto connect_error = co_await connect_before(socket, endpoint, deadline);
        if (connect_error == net::error::timed_out)
            co_return connect_result{false, "connect_timeout", net::error::timed_out};
        // ECONNRESET here means the upstream accepted and reset before we looked:
        // what it sent first is still queued, and the relay passes it on, then the reset.
        if (!connect_error || connect_error == net::error::connection_reset) {
            connected_to = endpoint;
            co_return connect_result{true, {}, {}};
        }
        if (connect_error == net::error::operation_aborted) co_return aborted;
        last_error = connect_error;
    }
    co_return connect_result{false, classify(last_error), last_error};
}

}  // namespace halfpipe
