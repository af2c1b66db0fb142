#pragma once
// A census of the kernel's TCP sockets that belong to the proxy, for the metrics endpoint.
//
// It reads the kernel's socket tables through NETLINK_SOCK_DIAG (inet_diag, the interface
// `ss` uses): one dump per address family, filtered inside the kernel by inet_diag
// bytecode so that only the proxy's sockets cross into user space. Unlike /proc/net/tcp
// this sees every state, TIME_WAIT and orphaned sockets (closed descriptors the kernel
// still finishes) included, and scales to tens of thousands of sockets per scrape.
//
// Plain Linux headers only; no Asio. Thread-safe: every call opens its own netlink socket.
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace halfpipe::kernel {

// The kernel's own numbering (include/net/tcp_states.h), which is what inet_diag reports.
enum class tcp_state : std::uint8_t {
    established = 1,
    syn_sent,
    syn_recv,
    fin_wait1,
    fin_wait2,
    time_wait,
    close,
    close_wait,
    last_ack,
    listen,
    closing,
};

inline constexpr std::array<tcp_state, 11> all_tcp_states{
    tcp_state::established, tcp_state::syn_sent,  tcp_state::syn_recv,   tcp_state::fin_wait1,
    tcp_state::fin_wait2,   tcp_state::time_wait, tcp_state::close,      tcp_state::close_wait,
    tcp_state::last_ack,    tcp_state::listen,    tcp_state::closing,
};

// "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
// "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"; "UNKNOWN" for anything else.
std::string_view state_name(tcp_state state) noexcept;

// downstream: a client connection accepted by a listener; upstream: a connection the proxy
// opened toward one of its upstream endpoints.
enum class side : std::uint8_t { downstream, upstream };
std::string_view side_name(side s) noexcept;  // "downstream", "upstream"

// An IPv4 or IPv6 address and a port. IPv4 occupies addr[0..3] (network byte order) with the
// rest zero; IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are always stored as plain IPv4, so
// a dual-stack socket and an IPv4 socket talking to the same peer compare equal.
struct endpoint {
    std::array<std::uint8_t, 16> addr{};
    bool v6 = false;
    std::uint16_t port = 0;  // host byte order

    // "127.0.0.1", "::1", "[::1]", "::ffff:10.0.0.1" (becomes IPv4). Throws
    // std::invalid_argument on anything else (no host names, no scope ids).
    static endpoint parse(std::string_view address, std::uint16_t port);
    // Raw kernel form: family AF_INET (4 bytes) or AF_INET6 (16 bytes), network byte order.
    static endpoint from_raw(int family, const void* address, std::uint16_t port) noexcept;

    bool is_unspecified() const noexcept;  // 0.0.0.0 or ::
    std::string address_string() const;    // "127.0.0.1", "::1"
    std::string to_string() const;         // "127.0.0.1:80", "[::1]:80"

    friend auto operator<=>(const endpoint&, const endpoint&) = default;
};

// What to count. Names group endpoints: a listener may be bound to several addresses
// (0.0.0.0:80 and [::]:80) and have several upstreams; both lists use the listener's name.
//  - downstream socket of listener L: local port == the port of one of L's listener
//    endpoints, and the local address equals that endpoint's address, or that address is
//    unspecified (0.0.0.0 matches any IPv4 local address, :: matches any address: dual stack);
//  - upstream socket of listener L: remote address:port == one of L's upstream endpoints.
// A socket is counted at most once per listener, as upstream when it matches both sides.
// The kernel cannot tell which process or listener opened a socket: an upstream endpoint
// shared by two listeners counts its sockets under both, and sockets of other processes that
// match an endpoint are counted too.
struct census_query {
    std::vector<std::pair<std::string /*listener*/, endpoint>> listeners;
    std::vector<std::pair<std::string /*listener*/, endpoint>> upstreams;
    // Also look for the IPv4 endpoints among AF_INET6 sockets (dual-stack sockets with
    // IPv4-mapped addresses). Every dump walks all TCP sockets of the kernel's hash table,
    // matching or not, so for a query with IPv4 endpoints only (no IPv6 address, no "::"
    // listener) turning this off saves the whole AF_INET6 dump, a quarter to a third of the
    // cost; the proxy's own sockets are AF_INET then anyway.
    bool ipv4_mapped = true;
};

struct census_result {
    struct upstream_counts {
        std::uint64_t time_wait = 0;  // sockets in TIME_WAIT toward the endpoint
        std::uint64_t total = 0;      // sockets in any state toward the endpoint
        friend bool operator==(const upstream_counts&, const upstream_counts&) = default;
    };

    // (listener, side, state) -> sockets. Only non-zero counts are present; LISTEN never is.
    std::map<std::tuple<std::string, side, tcp_state>, std::uint64_t> counts;
    // (listener, upstream endpoint) -> counts; every pair of the query is present, even at 0.
    std::map<std::pair<std::string, endpoint>, upstream_counts> upstreams;
    // upstream endpoint -> sockets in any state toward it, each socket counted once however
    // many listeners share the endpoint; every upstream endpoint of the query is present.
    std::map<endpoint, std::uint64_t> sockets_toward;

    // Diagnostics: sockets the kernel returned (after its bytecode filter) and whether the
    // filter ran in the kernel (false only for queries too large for one bytecode program,
    // where every TCP socket is dumped and filtered here instead).
    std::uint64_t sockets_examined = 0;
    bool filtered_in_kernel = true;

    std::uint64_t count(std::string_view listener, side s, tcp_state state) const;
    std::uint64_t total(std::string_view listener, side s) const;  // over all states
};

// Throws std::invalid_argument for a port 0 in the query and std::system_error when the
// netlink socket or dump fails.
census_result take_census(const census_query& query);

// net.ipv4.ip_local_port_range, the ephemeral ports connect() picks from (it also applies
// to IPv6). Both ends are inclusive.
struct port_range {
    std::uint16_t low = 0;
    std::uint16_t high = 0;
    std::uint32_t size() const noexcept { return high >= low ? std::uint32_t(high - low) + 1 : 0; }
    friend bool operator==(const port_range&, const port_range&) = default;
};
port_range parse_port_range(std::string_view text);  // "32768\t60999\n"; std::invalid_argument
port_range local_port_range();  // reads /proc/sys/net/ipv4/ip_local_port_range; std::system_error

// Free-port headroom toward one upstream: the size of the ephemeral port range minus the
// sockets in any state (TIME_WAIT included) toward that exact remote address:port, clamped
// at 0. One local address can use each port once per remote address:port; connecting from
// several source addresses multiplies the real headroom, ip_local_reserved_ports or
// IP_LOCAL_PORT_RANGE narrow it, and with net.ipv4.tcp_tw_reuse (1, or 2 for loopback)
// connect() may recycle TIME_WAIT ports; none of that is accounted for, so the figure is
// conservative for a single source address. Throws std::out_of_range when the
// endpoint was not an upstream of the census query.
std::uint64_t port_headroom(const census_result& census, const endpoint& upstream, port_range range);
std::uint64_t port_headroom(const census_result& census, const endpoint& upstream);

}  // namespace halfpipe::kernel
