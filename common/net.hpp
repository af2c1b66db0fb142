#pragma once
// The one place that names Boost.Asio for the rest of the code base.
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

namespace net = boost::asio;
using tcp = net::ip::tcp;
