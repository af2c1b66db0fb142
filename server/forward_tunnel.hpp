#pragma once
#include "common/net.hpp"

namespace halfpipe {

struct session;

// Forward modes: reads the client's HTTP CONNECT head or SOCKS5 negotiation under
// the handshake deadline, checks the destination ACL (on the name and on every
// address it resolves to), connects, answers the client, and sends upstream what
// the client pipelined after its request. true: the tunnel is open and the relay
// takes over, with the same contract as a reverse listener. false: the client got
// its error answer and the session's outcome says why.
net::awaitable<bool> open_forward_tunnel(session& s);

}  // namespace halfpipe
