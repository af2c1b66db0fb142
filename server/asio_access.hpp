#pragma once
// The two protected parts of Asio's reactive socket service (Boost 1.81) that the
// relay reaches past the public interface: a socket's implementation (its
// descriptor state) and the service's start_op(). Both through pointers to members
// formed in derived classes, which the language allows and which assume nothing
// of layout; used by readable_wait.hpp and socket_options.cpp only.
#include <boost/asio/version.hpp>

#include "common/net.hpp"

// What is reached here is not part of Asio's contract: a new Asio must be read
// again (start_op's arguments, the socket state flags, reactor_op) before this
// line is changed.
static_assert(BOOST_ASIO_VERSION == 102600, "asio_access.hpp was written against Asio 1.26 (Boost 1.81)");

namespace halfpipe::asio_access {

using reactor_op = net::detail::reactor_op;
using service_base = net::detail::reactive_socket_service_base;

struct socket_access : tcp_socket {
    static auto& io_object(tcp_socket& s) { return s.*(&socket_access::impl_); }
};

inline auto& implementation(tcp_socket& s) { return socket_access::io_object(s).get_implementation(); }

struct service_access : service_base {
    // start_op() as Asio's own reads call it: performed at once when the reactor
    // may have news for the descriptor, otherwise queued without a syscall.
    static void start_read(tcp_socket& s, reactor_op* op) {
        auto& io_object = socket_access::io_object(s);
        service_base& service = io_object.get_service();
        (service.*(&service_access::start_op))(io_object.get_implementation(), net::detail::reactor::read_op, op,
                                              /*is_continuation=*/false, /*is_non_blocking=*/true, /*noop=*/false);
    }
};

}  // namespace halfpipe::asio_access
