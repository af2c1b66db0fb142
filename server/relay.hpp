#pragma once
#include "common/net.hpp"

namespace halfpipe {

class worker;
struct listener_runtime;

// The whole life of one accepted connection: connect upstream, relay both
// directions with exact close semantics, log, unlink.
net::awaitable<void> run_session(worker& owner, listener_runtime& listener, tcp::socket client,
                                 tcp::endpoint client_endpoint);

}  // namespace halfpipe
