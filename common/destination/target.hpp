#pragma once
// What a forward-proxy client asks to reach, shared by the CONNECT and SOCKS5 parsers and
// the destination ACL. Pure text and byte handling: no Asio, no I/O.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace halfpipe::forward {

// An IP address as raw network-order bytes. IPv4 uses bytes[0..3]; the other 12 are zero.
// (Same layout as check_address() of the ACL: copy address_v4::to_bytes() into the front.)
struct ip_address {
    std::array<std::uint8_t, 16> bytes{};
    bool v6 = false;

    static ip_address v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) noexcept;
    static ip_address from_bytes(const std::array<std::uint8_t, 16>& bytes, bool v6) noexcept;

    // Strict literals only: dotted quad with exactly four decimal parts 0..255 and no leading
    // zeros ("127.1", "0x7f.0.0.1", "010.0.0.1" are rejected), or an IPv6 literal without
    // brackets and without a zone ("fe80::1%eth0" is rejected).
    static std::optional<ip_address> parse(std::string_view text) noexcept;

    bool is_v4_mapped() const noexcept;  // ::ffff:a.b.c.d
    // ::ffff:a.b.c.d becomes a.b.c.d; anything else is returned unchanged.
    ip_address unmapped() const noexcept;

    std::string to_string() const;  // "10.0.0.1", "2001:db8::1" (no brackets)

    friend bool operator==(const ip_address&, const ip_address&) = default;
};

enum class host_kind : std::uint8_t { name, ipv4, ipv6 };

// A host name we are willing to hand to the resolver: 1..253 characters (one trailing dot
// allowed on top), labels of 1..63 characters from [A-Za-z0-9_-], and a last label that is
// not numeric (all digits, or 0x followed by hex), because getaddrinfo/inet_aton would read
// "127.1" or "0x7f000001" as an IPv4 address and so bypass name-based policy.
bool is_valid_host_name(std::string_view name) noexcept;

// The destination of one CONNECT request or SOCKS5 request.
struct target {
    std::string host;       // as the client spelled it; IPv6 without brackets
    host_kind kind = host_kind::name;
    ip_address address{};   // meaningful when kind != name
    std::uint16_t port = 0;

    // "example.org:443", "10.0.0.1:80", "[2001:db8::1]:443": for logs.
    std::string authority() const;

    friend bool operator==(const target&, const target&) = default;
};

// Classifies a host (no brackets) as an IP literal or a valid host name; nullopt if neither.
std::optional<target> make_target(std::string_view host, std::uint16_t port);

}  // namespace halfpipe::forward
