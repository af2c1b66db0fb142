#include "server/socket_options.hpp"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/asio_access.hpp"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

namespace halfpipe {

namespace {
template <typename Socket>
void set_int(Socket& socket, int level, int name, int value) noexcept {
    ::setsockopt(socket.native_handle(), level, name, &value, sizeof value);
}
}  // namespace

void close_socket(tcp_socket& socket, close_kind kind) noexcept {
    if (!socket.is_open()) return;
    boost::system::error_code ignored;
    switch (kind) {
        case close_kind::abortive_rst:
            socket.set_option(net::socket_base::linger(true, 0), ignored);
            break;
        case close_kind::graceful_fin:
            socket.shutdown(tcp::socket::shutdown_send, ignored);
            break;
        case close_kind::immediate:
            break;
    }
    socket.close(ignored);
}

void set_reuse_port(tcp::acceptor& acceptor) {
    using reuse_port = net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
    acceptor.set_option(reuse_port(true));
}

namespace {
template <typename Socket>
void set_tcp_options(Socket& socket, const config::listener_config& cfg) noexcept {
    if (cfg.tcp_nodelay) set_int(socket, IPPROTO_TCP, TCP_NODELAY, 1);
    if (cfg.keepalive) {
        set_int(socket, SOL_SOCKET, SO_KEEPALIVE, 1);
        set_int(socket, IPPROTO_TCP, TCP_KEEPIDLE, static_cast<int>(cfg.keepalive->idle.count()));
        set_int(socket, IPPROTO_TCP, TCP_KEEPINTVL, static_cast<int>(cfg.keepalive->interval.count()));
        set_int(socket, IPPROTO_TCP, TCP_KEEPCNT, cfg.keepalive->probes);
    }
}

// Registers a descriptor opened non-blocking with the reactor, and records what
// open() and non_blocking(true) would have, without the ioctl. Asio counts an
// adopted descriptor as a possible duplicate, and would spend an EPOLL_CTL_DEL on
// it at close: it is ours alone, like one Asio opened itself. Closes fd on failure.
boost::system::error_code adopt_non_blocking(tcp_socket& socket, const tcp& protocol, int fd) noexcept {
    boost::system::error_code ec;
    socket.assign(protocol, fd, ec);  // registers it with the reactor
    if (ec) {
        ::close(fd);
        return ec;
    }
    namespace ops = net::detail::socket_ops;
    auto& state = asio_access::implementation(socket).state_;
    state = static_cast<ops::state_type>((state | ops::user_set_non_blocking | ops::internal_non_blocking) &
                                         ~ops::possible_dup);
    return {};
}
}  // namespace

void apply_listening_options(tcp::acceptor& acceptor, const config::listener_config& cfg) noexcept {
    set_tcp_options(acceptor, cfg);
}

boost::system::error_code open_non_blocking(tcp_socket& socket, const tcp& protocol) noexcept {
    const int fd = ::socket(protocol.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol.protocol());
    if (fd < 0) return {errno, boost::system::system_category()};
    return adopt_non_blocking(socket, protocol, fd);
}

boost::system::error_code accept_non_blocking(tcp::acceptor& acceptor, tcp_socket& socket,
                                              tcp::endpoint& peer) noexcept {
    auto len = static_cast<socklen_t>(peer.capacity());
    const int fd = ::accept4(acceptor.native_handle(), peer.data(), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return {errno, boost::system::system_category()};
    peer.resize(len);
    return adopt_non_blocking(socket, peer.protocol(), fd);
}

void apply_stream_options(tcp_socket& socket, const config::listener_config& cfg) noexcept {
    set_tcp_options(socket, cfg);
}

void set_bind_address_no_port(tcp_socket& socket) noexcept {
    set_int(socket, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
}

std::size_t unacked_bytes(tcp_socket& socket) noexcept {
    int pending = 0;
    if (!socket.is_open() || ::ioctl(socket.native_handle(), SIOCOUTQ, &pending) != 0) return 0;
    return pending > 0 ? static_cast<std::size_t>(pending) : 0;
}

std::optional<int> kernel_tcp_state(tcp_socket& socket) noexcept {
    if (!socket.is_open()) return std::nullopt;
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(socket.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return std::nullopt;
    return info.tcpi_state;
}

int take_socket_error(tcp_socket& socket) noexcept {
    int error = 0;
    socklen_t len = sizeof error;
    if (!socket.is_open() || ::getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) return 0;
    return error;
}

socket_snapshot snapshot_socket(tcp_socket& socket) noexcept {
    socket_snapshot snap;
    if (!socket.is_open()) return snap;
    const int fd = socket.native_handle();
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0) {
        snap.kernel_state = info.tcpi_state;
        snap.rtt_us = info.tcpi_rtt;
        snap.retransmits = info.tcpi_total_retrans;
    }
    int queued = 0;
    if (::ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0) snap.send_queue = static_cast<std::uint32_t>(queued);
    queued = 0;
    if (::ioctl(fd, SIOCINQ, &queued) == 0 && queued > 0) snap.receive_queue = static_cast<std::uint32_t>(queued);
    return snap;
}

}  // namespace halfpipe
