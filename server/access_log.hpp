#pragma once
#include "common/close_outcome.hpp"
#include "common/net.hpp"

namespace halfpipe {

struct session;
struct listener_runtime;
class worker;

// One logfmt line per connection when it ends.
void log_access(const session& s);
// For a connection refused before a session exists (max_connections).
void log_rejected(const worker& owner, const listener_runtime& listener, const tcp_socket& client, close_outcome why);

}  // namespace halfpipe
