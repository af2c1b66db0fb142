#pragma once
// SOCKS5 server side (RFC 1928) with username/password sub-negotiation (RFC 1929), as an
// I/O-free state machine: the relay feeds whatever it read, writes back `reply`, and acts on
// `state`. Byte boundaries do not matter; a client may pipeline greeting, auth, request and
// payload in one segment.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "server/forward/connect_failure.hpp"
#include "common/destination/target.hpp"

namespace halfpipe::forward {

enum class socks5_reply : std::uint8_t {
    succeeded = 0x00,
    general_failure = 0x01,
    not_allowed = 0x02,  // connection not allowed by ruleset
    network_unreachable = 0x03,
    host_unreachable = 0x04,
    connection_refused = 0x05,
    ttl_expired = 0x06,  // also what halfpipe answers when its connect timeout fires
    command_not_supported = 0x07,
    address_type_not_supported = 0x08,
};

std::string_view to_string(socks5_reply code) noexcept;

// denied→not_allowed, resolve_failed→host_unreachable, refused→connection_refused,
// network_unreachable→network_unreachable, host_unreachable→host_unreachable,
// timed_out→ttl_expired, address_unavailable and other→general_failure.
socks5_reply socks5_reply_for(connect_failure failure) noexcept;
inline socks5_reply socks5_reply_for_errno(int err) noexcept { return socks5_reply_for(classify_errno(err)); }

// VER=5 REP RSV=0 ATYP BND.ADDR BND.PORT. `bound` is the local address of the upstream socket
// on success; failures conventionally carry 0.0.0.0:0, the default.
std::string socks5_reply_bytes(socks5_reply code, const ip_address& bound = {}, std::uint16_t bound_port = 0);

enum class socks5_auth : std::uint8_t {
    none,               // method 0x00; a client that does not offer it gets 0xFF
    username_password,  // method 0x02 (RFC 1929); a client that does not offer it gets 0xFF
};

struct socks5_options {
    socks5_auth auth = socks5_auth::none;
};

enum class socks5_command : std::uint8_t { connect = 0x01, bind = 0x02, udp_associate = 0x03 };

struct socks5_request {
    // host is the text of the address: dotted quad, IPv6 without brackets, or the domain. A
    // domain that is itself a strict IP literal ("127.0.0.1") is classified as that literal,
    // exactly as the CONNECT parser would, so the relay does not resolve it.
    forward::target target;
    std::uint8_t address_type = 0;  // ATYP as sent: 0x01, 0x03 or 0x04
};

struct socks5_result {
    enum class status {
        need_more,     // send `reply` (may be empty), read more, feed again
        authenticate,  // check username/password, then call auth_verdict()
        request,       // CONNECT request complete: send `reply` (if any), connect, then send
                       // socks5_reply_bytes() and forward pipelined()
        failed,        // send `reply` (may be empty), then close
    };
    status state = status::need_more;
    std::string reply;  // bytes to write to the client now, in order
    // On authenticate (RFC 1929 allows 0..255 bytes each; empty ones are passed on, not refused).
    std::string username;
    std::string password;
    // On failed: one line for the log.
    std::string error;
    // On failed: the client offered no method this listener accepts (e.g. no
    // username/password where credentials are required).
    bool no_acceptable_method = false;
};

class socks5_session {
public:
    explicit socks5_session(socks5_options options = {});

    // Buffers `bytes` and runs the state machine as far as they go. While a verdict is
    // pending (after authenticate) or once the request is complete, bytes are only buffered:
    // the latter become pipelined(). After failed, bytes are ignored and failed is returned
    // again (same error, empty reply).
    socks5_result feed(std::string_view bytes);

    // After authenticate: ok → reply 01 00 and carry on with whatever is buffered (the result
    // may already be request or failed); !ok → reply 01 01, failed. Throws std::logic_error
    // when no verdict is pending.
    socks5_result auth_verdict(bool ok);

    // Valid after the request state was returned.
    const socks5_request& request() const noexcept { return request_; }

    // Bytes the client sent after its request: payload for upstream, to send once the
    // success reply is out. take_pipelined() hands them over and clears the buffer.
    std::string_view pipelined() const noexcept;
    std::string take_pipelined();

    // greeting → [auth → auth_pending →] request → requested, or failed from anywhere.
    enum class phase : std::uint8_t { greeting, auth, auth_pending, request, requested, failed };
    phase current_phase() const noexcept { return phase_; }

private:
    socks5_result run(std::string reply);
    socks5_result fail(std::string reply, std::string why);

    socks5_options options_;
    phase phase_ = phase::greeting;
    std::string in_;  // buffered input; after the request, only pipelined payload
    socks5_request request_;
    std::string username_, password_;
    std::string error_;  // why the session failed
};

}  // namespace halfpipe::forward
