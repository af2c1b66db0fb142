#pragma once
// Why the relay could not open the upstream leg of a forward-proxy request, independent of
// the client protocol. SOCKS5 turns it into a reply code, CONNECT into an HTTP status.
#include <cstdint>
#include <string_view>

namespace halfpipe::forward {

enum class connect_failure : std::uint8_t {
    denied,               // the destination ACL said no (name or any resolved address)
    resolve_failed,       // the name did not resolve (NXDOMAIN, no address, resolver error)
    refused,              // ECONNREFUSED: RST in answer to the SYN
    network_unreachable,  // ENETUNREACH, ENETDOWN: no route
    host_unreachable,     // EHOSTUNREACH, EHOSTDOWN: ICMP host unreachable, no ARP answer
    timed_out,            // ETIMEDOUT, or halfpipe's own connect timeout fired
    address_unavailable,  // EADDRNOTAVAIL: no local address/port left to connect from
    other,                // anything else
};

// errno value (boost::system::error_code::value() in the system category on Linux) to a failure.
// 0 is not a failure; it maps to `other` so that a caller bug shows as a general failure.
connect_failure classify_errno(int err) noexcept;

std::string_view to_string(connect_failure failure) noexcept;

}  // namespace halfpipe::forward
