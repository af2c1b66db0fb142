#pragma once
// Which destinations the forward proxy may open: an ordered list of allow/deny rules, first
// match wins, no match = deny. Pure data; no Asio, no resolver.
//
// A rule has any combination of three criteria, all of which must hold for it to match
// (a rule with none matches every destination):
//   network  CIDR, compared with the destination address (IPv4 or IPv6)
//   host     "example.org" or "*.example.org" (subdomains only, not example.org itself) or "*"
//            (any host name); case-insensitive, trailing dot ignored; compared with the name
//            the client asked for, never with an IP literal and never with a reverse lookup
//   ports    "443", "80,443", "1024-65535", "22, 80-90"; absent = every port
//
// How the relay uses it (a destination = the requested name, if any, plus the address dialed):
//   1. check_name(requested host, port) before resolving. A deny is final (no DNS query is
//      needed). An allow is final unless `provisional`: a rule with a network criterion could
//      still decide once the address is known.
//   2. For every resolved address, check_address(requested name, address, port) — the
//      overload WITH the name, so that host rules still match. Never dial an address that was
//      denied (either skip it or fail the whole request), and dial only addresses that were
//      checked (no second lookup). A name that resolves to a denied address thus never
//      reaches it: listing
//      `deny 10.0.0.0/8` before `allow *.example.org` stops example.org names from being
//      pointed at 10/8 (DNS rebinding). Order decides: a rule earlier in the list wins.
//   For an IP-literal destination (CONNECT 10.0.0.1:443, SOCKS5 ATYP 1/4) step 1 is already
//   exact, and check_address without a name gives the same answer.
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are checked as the IPv4 address a.b.c.d, so
// they match IPv4 networks and never IPv6 ones; a mapped CIDR such as ::ffff:10.0.0.0/104 is
// read as 10.0.0.0/8. IPv6 networks (including ::/0) therefore never cover IPv4 traffic:
// "everything" is 0.0.0.0/0 plus ::/0.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/destination/target.hpp"

namespace halfpipe::forward {

struct cidr {
    ip_address network;  // host bits are zero
    unsigned prefix = 0; // 0..32 for IPv4, 0..128 for IPv6

    bool contains(const ip_address& address) const noexcept;  // same family only; no unmapping here
    std::string to_string() const;                           // "10.0.0.0/8", "::1/128"
};

struct host_pattern {
    enum class kind : std::uint8_t { exact, subdomains, any };
    kind match = kind::exact;
    std::string name;  // lower case, no trailing dot; for subdomains the part after "*."

    bool matches(std::string_view host) const noexcept;  // host as requested (any case, trailing dot ok)
    std::string to_string() const;                       // "example.org", "*.example.org", "*"
};

struct port_range {
    std::uint16_t first = 1;
    std::uint16_t last = 65535;
    friend bool operator==(const port_range&, const port_range&) = default;
};

struct acl_rule {
    bool allow = false;
    std::optional<cidr> network;
    std::optional<host_pattern> host;
    std::vector<port_range> ports;  // empty = every port

    bool matches_port(std::uint16_t port) const noexcept;
    // Canonical text for logs: "allow cidr=10.0.0.0/8 host=*.example.org ports=80,443".
    std::string to_string() const;
};

struct acl_decision {
    bool allowed = false;
    std::optional<std::size_t> rule;  // index of the rule that decided; nullopt = default deny
    // check_name only: allowed so far, but a network rule can still deny (or was the one that
    // allowed) once the address is known; check_address must decide.
    bool provisional = false;
};

// Builds a rule from the strings of one config entry, e.g. action "allow", cidr "127.0.0.0/8",
// ports "1-65535". Throws std::invalid_argument with a message naming the bad field and value:
// action not allow/deny; CIDR not a strict address, prefix out of range, host bits set (so
// "10.0.0.1/8" is refused rather than silently widened); host not a valid name or "*."+name or
// "*", or an IP literal (use cidr); ports empty, not numbers, 0, > 65535, or a range backwards.
// An address without "/len" is a single host (/32 or /128).
acl_rule parse_rule(std::string_view action, std::optional<std::string_view> cidr,
                    std::optional<std::string_view> host, std::optional<std::string_view> ports);

class destination_acl {
public:
    destination_acl() = default;  // no rules: everything denied
    explicit destination_acl(std::vector<acl_rule> rules);

    // allow 127.0.0.0/8 and ::1/128 on every port; deny the rest.
    static destination_acl loopback_only();

    // The requested host before resolution: a name, an IPv4 literal, or an IPv6 literal with or
    // without brackets. For literals the answer is exact (host rules do not match literals).
    acl_decision check_name(std::string_view host, std::uint16_t port) const;

    // An address on its own (the client gave an IP literal). Rules with a host criterion do not
    // match. IPv4 in addr[0..3] when !v6.
    acl_decision check_address(const std::array<std::uint8_t, 16>& addr, bool v6, std::uint16_t port) const;
    // One resolved address of `requested_name`: network rules see the address, host rules the name.
    acl_decision check_address(std::string_view requested_name, const std::array<std::uint8_t, 16>& addr, bool v6,
                               std::uint16_t port) const;
    acl_decision check_address(std::string_view requested_name, const ip_address& address, std::uint16_t port) const;

    const std::vector<acl_rule>& rules() const noexcept { return rules_; }
    // "allowed by rule 2 (allow cidr=10.0.0.0/8)", "denied: no rule matched"; for logs.
    std::string describe(const acl_decision& decision) const;

private:
    acl_decision evaluate(std::optional<std::string_view> name, const std::optional<ip_address>& address,
                          std::uint16_t port) const;

    std::vector<acl_rule> rules_;
};

}  // namespace halfpipe::forward
