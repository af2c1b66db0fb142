#pragma once
#include "common/net.hpp"
#include "server/listener_runtime.hpp"

namespace halfpipe {

class worker;

// SO_REUSEADDR + SO_REUSEPORT, so each worker binds its own acceptor to the same address;
// the listener's TCP options, which accepted sockets inherit; its backlog.
tcp::acceptor open_acceptor(net::io_context& context, const tcp::endpoint& endpoint,
                            const config::listener_config& cfg);

// Never ends on an I/O error: only when the acceptor is closed (drain).
net::awaitable<void> accept_loop(worker& owner, listener_runtime& listener, tcp::acceptor& acceptor);

}  // namespace halfpipe
