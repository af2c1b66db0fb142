#pragma once
#include <string_view>

#include "common/net.hpp"
#include "server/listener_runtime.hpp"

namespace halfpipe {

struct connect_result {
    bool ok = false;
    std::string_view reason;  // on failure: connect_refused, connect_timeout, connect_unreachable,
                              // port_exhausted, resolve_failed, connect_error
    boost::system::error_code error;
};

// Resolves (host names asynchronously, per connection) and connects `socket`, trying
// each address in turn; the listener's connect timeout bounds the whole attempt.
net::awaitable<connect_result> connect_upstream(listener_runtime& listener, tcp::socket& socket,
                                                tcp::endpoint& connected_to);

}  // namespace halfpipe
