#pragma once
#include "common/net.hpp"

namespace halfpipe {

struct session;

// The life of one accepted connection from its session on: connect upstream (or
// open a forward tunnel), then hand over to the relay, which runs both directions
// with exact close semantics on plain handlers and, at the end, logs and frees
// the session. The coroutine itself ends at the handover.
net::awaitable<void> run_session(session& s);

}  // namespace halfpipe
