#pragma once
// The parts of Asio (Boost 1.81) that the relay reaches past the public interface:
// a socket's implementation and the service's start_op() (both protected: through
// pointers to members formed in derived classes); an acceptor's implementation,
// and, of the epoll reactor's record of a descriptor, the "try a speculative read"
// flag, the events epoll registered and reported, and the epoll descriptor
// (private: through pointers to members named in explicit instantiations, where
// access is not checked). None assumes anything of layout; used by
// readable_wait.hpp and socket_options.cpp only.
#include <sys/epoll.h>

#include <cstdint>
#include <type_traits>

#include <boost/asio/version.hpp>

#include "common/net.hpp"

// What is reached here is not part of Asio's contract: a new Asio must be read
// again (start_op's arguments, the socket state flags, reactor_op) before this
// line is changed.
static_assert(BOOST_ASIO_VERSION == 102600, "asio_access.hpp was written against Asio 1.26 (Boost 1.81)");
static_assert(std::is_same_v<net::detail::reactor, net::detail::epoll_reactor>,
              "asio_access.hpp was written against Asio's epoll reactor");

namespace halfpipe::asio_access {

namespace detail {
// The pointer to a private member, handed out by a friend function that an explicit
// instantiation of this template defines.
template <auto member, typename tag>
struct expose {
    friend constexpr auto pointer_to(tag) noexcept { return member; }
};
struct try_speculative_tag {
    friend constexpr auto pointer_to(try_speculative_tag) noexcept;
};
template struct expose<&net::detail::epoll_reactor::descriptor_state::try_speculative_, try_speculative_tag>;
struct registered_events_tag {
    friend constexpr auto pointer_to(registered_events_tag) noexcept;
};
template struct expose<&net::detail::epoll_reactor::descriptor_state::registered_events_, registered_events_tag>;
struct descriptor_reactor_tag {
    friend constexpr auto pointer_to(descriptor_reactor_tag) noexcept;
};
template struct expose<&net::detail::epoll_reactor::descriptor_state::reactor_, descriptor_reactor_tag>;
struct epoll_fd_tag {
    friend constexpr auto pointer_to(epoll_fd_tag) noexcept;
};
template struct expose<&net::detail::epoll_reactor::epoll_fd_, epoll_fd_tag>;
// The reactor queues a descriptor's record as an operation whose result is the
// events epoll reported for it, and performs the descriptor's operations from there.
struct task_result_tag {
    friend constexpr auto pointer_to(task_result_tag) noexcept;
};
template struct expose<&net::detail::scheduler_operation::task_result_, task_result_tag>;
struct acceptor_impl_tag {
    friend constexpr auto pointer_to(acceptor_impl_tag) noexcept;
};
template struct expose<&tcp::acceptor::impl_, acceptor_impl_tag>;
}  // namespace detail

using descriptor_state = net::detail::epoll_reactor::descriptor_state;

using reactor_op = net::detail::reactor_op;
using service_base = net::detail::reactive_socket_service_base;

struct socket_access : tcp_socket {
    static auto& io_object(tcp_socket& s) { return s.*(&socket_access::impl_); }
};

inline auto& io_object(tcp_socket& s) { return socket_access::io_object(s); }
// A listening socket has the same implementation and service as a connected one,
// in a private member.
inline auto& io_object(tcp::acceptor& a) { return a.*pointer_to(detail::acceptor_impl_tag{}); }

template <typename Socket>
auto& implementation(Socket& s) {
    return io_object(s).get_implementation();
}

struct service_access : service_base {
    // start_op() as Asio's own reads call it: performed at once when the reactor
    // may have news for the descriptor, otherwise queued without a syscall.
    template <typename Socket>
    static void start_read(Socket& s, reactor_op* op) {
        auto& io_object = asio_access::io_object(s);
        service_base& service = io_object.get_service();
        (service.*(&service_access::start_op))(io_object.get_implementation(), net::detail::reactor::read_op, op,
                                              /*is_continuation=*/false, /*is_non_blocking=*/true, /*noop=*/false);
    }
};

// The reactor sets a descriptor's flag on every event and clears it when a read
// finds nothing; while it is set, the next read (or readable wait) is tried at once
// instead of queued. After the caller's own reads reached EAGAIN, an event it has
// not seen yet cannot be pending: the flag is stale, and would cost a wake-up and a
// read that finds nothing. Only the io_context's one thread may call this: it is
// the thread that runs the reactor's handlers for the descriptor.
template <typename Socket>
descriptor_state* reactor_record(Socket& s) {
    return implementation(s).reactor_data_;
}

template <typename Socket>
void forget_read_news(Socket& s) {
    auto* state = reactor_record(s);
    if (state) (state->*pointer_to(detail::try_speculative_tag{}))[net::detail::reactor::read_op] = false;
}

// The events epoll reported for the descriptor in the wake the reactor is handling:
// valid only within an operation's perform(), which the reactor calls from there.
inline std::uint32_t ready_events(descriptor_state* state) {
    // A C-style cast may name a private base; the record is an operation privately.
    auto* queued = (net::detail::scheduler_operation*)state;
    return queued->*pointer_to(detail::task_result_tag{});
}

// Whether epoll reports the peer's FIN (EPOLLRDHUP) on this socket apart from data.
inline bool reports_peer_fin(tcp_socket& s) {
    auto* state = reactor_record(s);
    return state && ((state->*pointer_to(detail::registered_events_tag{})) & EPOLLRDHUP) != 0;
}

// Has epoll report the peer's FIN (EPOLLRDHUP) on this socket from now on: one
// EPOLL_CTL_MOD. The new mask is recorded where Asio keeps it, so that Asio's own
// re-registrations (EPOLLOUT for a full send queue) keep the flag. Only the
// io_context's one thread may call this, as for forget_read_news. False when epoll
// refused; nothing changed then.
inline bool report_peer_fin(tcp_socket& s) {
    auto* state = reactor_record(s);
    if (!state) return false;
    auto& registered = state->*pointer_to(detail::registered_events_tag{});
    if (registered & EPOLLRDHUP) return true;
    const int epoll_fd = (state->*pointer_to(detail::descriptor_reactor_tag{}))->*pointer_to(detail::epoll_fd_tag{});
    epoll_event ev{};
    ev.events = registered | EPOLLRDHUP;
    ev.data.ptr = state;
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, s.native_handle(), &ev) != 0) return false;
    registered = ev.events;
    return true;
}

}  // namespace halfpipe::asio_access
