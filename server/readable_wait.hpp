#pragma once
// A wait for readability that costs no syscall.
//
// Asio's async_wait re-arms the descriptor (EPOLL_CTL_MOD) on every call, so that a
// socket that is readable already reports at once: several syscalls per connection,
// and one per direction per request on a keep-alive connection. The relay does not
// need it: its sockets are registered edge-triggered for input from the start, and
// it waits only after a read found nothing more (EAGAIN), so the next arrival raises
// a fresh edge anyway.
//
// This wait is started the way Asio starts a read, with speculation allowed: when
// the reactor saw an event on the socket since the last wait completed, it completes
// at once (the read that follows finds out what it was); otherwise it sleeps until
// the next edge, error or hang-up. Closing or cancelling the socket ends it with
// operation_aborted, as with async_wait. A caller that waits before its reads reach
// EAGAIN may sleep through data or a FIN that is already there: never do that.
//
// It reaches two protected parts of Asio's reactive socket service (Boost 1.81):
// a socket's implementation and start_op(), through pointers to members formed in
// derived classes, which the language allows and which assume nothing of layout.
#include <cstddef>
#include <memory>
#include <utility>

#include "common/net.hpp"

namespace halfpipe {

namespace readable_wait_detail {

using reactor_op = net::detail::reactor_op;
using service_base = net::detail::reactive_socket_service_base;

struct socket_access : tcp_socket {
    static auto& io_object(tcp_socket& s) { return s.*(&socket_access::impl_); }
};

struct service_access : service_base {
    static void start_read(service_base& service, service_base::base_implementation_type& impl, reactor_op* op) {
        (service.*(&service_access::start_op))(impl, net::detail::reactor::read_op, op, /*is_continuation=*/false,
                                              /*is_non_blocking=*/true, /*noop=*/false);
    }
};

template <typename Handler>
class op final : public reactor_op {
public:
    explicit op(Handler handler)
        : reactor_op(boost::system::error_code(), &op::perform, &op::complete), handler_(std::move(handler)) {}

private:
    // "Done, and nothing more to expect": the reactor stops speculating until the
    // next event, so the wait after this one queues instead of completing at once.
    static status perform(reactor_op*) { return done_and_exhausted; }

    static void complete(void* owner, net::detail::scheduler_operation* base, const boost::system::error_code&,
                         std::size_t) {
        std::unique_ptr<op> self(static_cast<op*>(base));
        const boost::system::error_code ec = self->ec_;
        Handler handler(std::move(self->handler_));
        self.reset();  // freed first: the handler usually starts the next wait
        if (owner) handler(ec);  // no owner: the io_context is being destroyed
    }

    Handler handler_;
};

}  // namespace readable_wait_detail

// handler(const boost::system::error_code&), run on the socket's io_context. The
// socket must be open and non-blocking (set by the user), as every relay socket is.
template <typename Handler>
void async_wait_readable(tcp_socket& socket, Handler handler) {
    namespace d = readable_wait_detail;
    auto& io_object = d::socket_access::io_object(socket);
    auto* wait = new d::op<Handler>(std::move(handler));
    d::service_access::start_read(io_object.get_service(), io_object.get_implementation(), wait);
}

}  // namespace halfpipe
