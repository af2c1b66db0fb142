#include "config/bind_claims.hpp"

#include <arpa/inet.h>

namespace halfpipe::config {

std::optional<std::string> bind_claims::claim(const host_port& address, const std::string& owner) {
    if (address.port == 0) return std::nullopt;

    // A wildcard and a specific address on one port are not a collision: with
    // SO_REUSEPORT both bind, and the kernel hands each connection to the most
    // specific match, which is a legitimate way to carve out one address.
    int family = AF_INET;
    unsigned char raw[sizeof(in6_addr)] = {};
    if (::inet_pton(AF_INET, address.host.c_str(), raw) != 1) {
        family = AF_INET6;
        // Host names never get here: bind addresses are validated as IP literals first.
        if (::inet_pton(AF_INET6, address.host.c_str(), raw) != 1) return std::nullopt;
    }
    char text[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(family, raw, text, sizeof text);
    claim_entry entry{text, address.port, owner};

    for (const auto& earlier : claims_)
        if (earlier.canonical_host == entry.canonical_host && earlier.port == entry.port) return earlier.owner;
    claims_.push_back(std::move(entry));
    return std::nullopt;
}

}  // namespace halfpipe::config
