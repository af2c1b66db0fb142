#pragma once
// The one place that names Boost.Asio for the rest of the code base.
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

namespace net = boost::asio;
using tcp = net::ip::tcp;

// A worker's sockets and timers only ever run on its own io_context, whose executor
// is one pointer; any_io_executor is 56 bytes, carried by every socket, timer and
// pending wait of every connection.
using worker_executor = net::io_context::executor_type;
using tcp_socket = tcp::socket::rebind_executor<worker_executor>::other;
using worker_timer = net::basic_waitable_timer<std::chrono::steady_clock, net::wait_traits<std::chrono::steady_clock>,
                                               worker_executor>;
