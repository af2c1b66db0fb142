#pragma once
// A wait for readability that costs no syscall.
//
// Asio's async_wait re-arms the descriptor (EPOLL_CTL_MOD) on every call, so that a
// socket that is readable already reports at once: several syscalls per connection,
// and one per direction per request on a keep-alive connection. The relay does not
// need it: its sockets are registered edge-triggered for input from the start, and
// it waits only after its reads found nothing more (EAGAIN) or the end (EOF), so
// whatever arrives next raises a fresh edge, which completes this wait.
//
// So the wait is queued at once, without the speculative completion Asio would make
// for a descriptor that saw an event since its last wait: that event was read
// already, and completing on it would cost a wake-up and a read that finds nothing.
// Closing or cancelling the socket ends the wait with operation_aborted, as with
// async_wait. A caller that waits before its reads reach EAGAIN may sleep through
// data or a FIN that is already there: never do that.
#include <cstddef>
#include <memory>
#include <utility>

#include "server/asio_access.hpp"

namespace halfpipe {

namespace readable_wait_detail {

using asio_access::reactor_op;

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
// socket must be open and non-blocking (set by the user), as every relay socket is,
// and the caller on the io_context's thread.
template <typename Handler>
void async_wait_readable(tcp_socket& socket, Handler handler) {
    asio_access::forget_read_news(socket);
    asio_access::service_access::start_read(socket, new readable_wait_detail::op<Handler>(std::move(handler)));
}

}  // namespace halfpipe
