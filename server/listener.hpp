#pragma once
#include "common/net.hpp"
#include "server/listener_runtime.hpp"

namespace halfpipe {

class worker;

// SO_REUSEADDR + SO_REUSEPORT, so each worker binds its own acceptor to the same address;
// the listener's TCP options, which accepted sockets inherit. Bound, not listening:
// worker::start() listens once every address is bound, so that a process that fails
// to bind one (a reload's successor, say) never had clients queued on the others.
tcp::acceptor open_acceptor(net::io_context& context, const tcp::endpoint& endpoint,
                            const config::listener_config& cfg);

// Never ends on an I/O error: only when the acceptor is closed (drain).
net::awaitable<void> accept_loop(worker& owner, listener_runtime& listener, tcp::acceptor& acceptor);

}  // namespace halfpipe
