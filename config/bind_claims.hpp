#pragma once
// Private to the config layer: catches two sockets given the same address. The
// server binds every acceptor with SO_REUSEPORT, so the kernel would accept such a
// config and silently split connections between the two owners; here it is
// reported against the config line instead.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace halfpipe::config {

class bind_claims {
public:
    // Records `address` for `owner`; returns the earlier owner of the same address.
    // Port 0 never collides: the kernel picks a distinct port for each.
    std::optional<std::string> claim(const host_port& address, const std::string& owner);

private:
    struct claim_entry {
        std::string canonical_host;  // inet_ntop form, so "::1" and "0::1" compare equal
        std::uint16_t port;
        std::string owner;
    };
    std::vector<claim_entry> claims_;
};

}  // namespace halfpipe::config
