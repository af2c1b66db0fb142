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
// data or a FIN that is already there: never do that, with one exception, which
// needs the wake's events (handed to the handler) and EPOLLRDHUP registered
// (report_peer_fin): see nothing_left_after_short_read().
#include <sys/epoll.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "server/asio_access.hpp"

namespace halfpipe {

namespace readable_wait_detail {

using asio_access::reactor_op;

template <typename Handler>
class op final : public reactor_op {
public:
    op(asio_access::descriptor_state* state, Handler handler)
        : reactor_op(boost::system::error_code(), &op::perform, &op::complete),
          state_(state),
          handler_(std::move(handler)) {}

private:
    // "Done, and nothing more to expect": the reactor stops speculating until the
    // next event, so the wait after this one queues instead of completing at once.
    // Called from the reactor's handling of the wake, while its events are at hand.
    static status perform(reactor_op* base) {
        auto* self = static_cast<op*>(base);
        self->events_ = asio_access::ready_events(self->state_);
        return done_and_exhausted;
    }

    static void complete(void* owner, net::detail::scheduler_operation* base, const boost::system::error_code&,
                         std::size_t) {
        std::unique_ptr<op> self(static_cast<op*>(base));
        const boost::system::error_code ec = self->ec_;
        const std::uint32_t events = self->events_;
        Handler handler(std::move(self->handler_));
        self.reset();  // freed first: the handler usually starts the next wait
        if (owner) handler(ec, events);  // no owner: the io_context is being destroyed
    }

    asio_access::descriptor_state* state_;
    std::uint32_t events_ = 0;
    Handler handler_;
};

}  // namespace readable_wait_detail

// handler(const boost::system::error_code&, std::uint32_t events), run on the
// socket's io_context: the events epoll reported for the wake (EPOLLIN, EPOLLRDHUP,
// EPOLLHUP, EPOLLERR ...), or 0 when the wait ended otherwise (closed, cancelled).
// The socket must be open and non-blocking (set by the user), as every relay
// socket is, and the caller on the io_context's thread.
template <typename Socket, typename Handler>
void async_wait_readable(Socket& socket, Handler handler) {
    asio_access::forget_read_news(socket);
    asio_access::service_access::start_read(
        socket, new readable_wait_detail::op<Handler>(asio_access::reactor_record(socket), std::move(handler)));
}

// Whether epoll reports the peer's FIN apart from data on this socket (EPOLLRDHUP),
// and the one EPOLL_CTL_MOD that makes it do so; false when epoll refused.
inline bool reports_peer_fin(tcp_socket& socket) { return asio_access::reports_peer_fin(socket); }
inline bool report_peer_fin(tcp_socket& socket) { return asio_access::report_peer_fin(socket); }

// A read that did not fill its buffer got all the kernel had queued then: a TCP
// read stops short only when the queue runs dry, at a FIN, or at urgent data.
// When the wake reported bytes alone (no FIN: EPOLLRDHUP registered and not
// reported; no hang-up, error or urgent data), whatever comes next (bytes, a FIN,
// a reset) arrives after the wake and raises a new edge: the caller may wait now,
// and skip the read that would only find EAGAIN. Events of 0 (unknown) never qualify.
inline bool nothing_left_after_short_read(tcp_socket& socket, std::uint32_t events) {
    return (events & ~std::uint32_t{EPOLLOUT}) == EPOLLIN && reports_peer_fin(socket);
}

// async_wait_readable for a coroutine: co_await gives (error_code, events).
template <typename Socket>
auto wait_readable(Socket& socket) {
    constexpr auto token = net::as_tuple(net::use_awaitable);
    return net::async_initiate<decltype(token), void(boost::system::error_code, std::uint32_t)>(
        [&socket](auto handler) { async_wait_readable(socket, std::move(handler)); }, token);
}

}  // namespace halfpipe
