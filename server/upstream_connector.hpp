#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/net.hpp"
#include "server/listener_runtime.hpp"

namespace halfpipe {

struct connect_result {
    bool ok = false;
    std::string_view reason;  // on failure: connect_refused, connect_timeout, connect_unreachable,
                              // port_exhausted, resolve_failed, connect_error, destination_denied
    boost::system::error_code error;
};

struct upstream_target {
    std::string host;  // DNS name or IP literal (no brackets)
    std::uint16_t port = 0;
};

// false: the resolved address may not be connected to (forward-proxy ACLs).
using endpoint_filter = std::function<bool(const tcp::endpoint&)>;

// Resolves (host names asynchronously, per connection) and connects `socket`, trying
// each allowed address in turn; the listener's connect timeout bounds the whole attempt.
// Once `abandoned` is true (the session was terminated meanwhile: its upstream socket
// was not open yet, so nothing was closed) no socket is opened: reason "aborted".
net::awaitable<connect_result> connect_upstream(listener_runtime& listener, const upstream_target& target,
                                                tcp_socket& socket, tcp::endpoint& connected_to,
                                                const bool& abandoned, const endpoint_filter& allowed = nullptr);

// The reverse-proxy form: the listener's configured upstream.
net::awaitable<connect_result> connect_upstream(listener_runtime& listener, tcp_socket& socket,
                                                tcp::endpoint& connected_to, const bool& abandoned);

}  // namespace halfpipe
