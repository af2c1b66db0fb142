#pragma once
// Socket-level policies, each a thin named wrapper so that relay code reads as policy.
#include <chrono>
#include <cstddef>
#include <optional>

#include "common/close_kind.hpp"
#include "common/net.hpp"
#include "config/config.hpp"
#include "server/session_snapshot.hpp"

namespace halfpipe {

// Ends a socket the way `kind` says; safe on an already closed socket.
void close_socket(tcp_socket& socket, close_kind kind) noexcept;

void set_reuse_port(tcp::acceptor& acceptor);
// TCP_NODELAY and keepalive set once on a listening socket: Linux copies them to
// every socket it accepts, which saves those setsockopt calls per connection.
void apply_listening_options(tcp::acceptor& acceptor, const config::listener_config& cfg) noexcept;
// Opens `socket` non-blocking from the start (SOCK_NONBLOCK | SOCK_CLOEXEC), sparing
// the ioctl of Asio's open() followed by non_blocking(true).
boost::system::error_code open_non_blocking(tcp_socket& socket, const tcp& protocol) noexcept;
// Takes the next connection queued on a non-blocking listening socket (accept4 with
// SOCK_NONBLOCK | SOCK_CLOEXEC) into `socket`, and its address into `peer`: no
// ioctl, no getpeername(). would_block when the queue is empty.
boost::system::error_code accept_non_blocking(tcp::acceptor& acceptor, tcp_socket& socket,
                                              tcp::endpoint& peer) noexcept;
// An outgoing socket: all of the listener's stream options, one by one.
void apply_stream_options(tcp_socket& socket, const config::listener_config& cfg) noexcept;
// Lets the kernel pick the source port at connect() time, not bind() time, so a
// fixed source address does not cap us at one port range per listener.
void set_bind_address_no_port(tcp_socket& socket) noexcept;

// Bytes written to the socket that the peer has not yet acknowledged.
std::size_t unacked_bytes(tcp_socket& socket) noexcept;

// The kernel's TCP state (TCP_ESTABLISHED, TCP_CLOSE_WAIT, ...) or nullopt.
std::optional<int> kernel_tcp_state(tcp_socket& socket) noexcept;

// SO_ERROR: the pending error of the socket (ECONNRESET after an RST), which
// reading it clears, or 0.
int take_socket_error(tcp_socket& socket) noexcept;

// State, queues and TCP_INFO figures, for the admin endpoint.
socket_snapshot snapshot_socket(tcp_socket& socket) noexcept;

}  // namespace halfpipe
