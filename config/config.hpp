#pragma once
// The validated, immutable configuration. Nothing here knows about sockets: the
// server layer turns these values into endpoints and socket options.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/close_kind.hpp"

namespace halfpipe::config {

using duration = std::chrono::milliseconds;
using namespace std::chrono_literals;

// "127.0.0.1:80", "[::1]:80", "example.org:443". host is kept without brackets.
struct host_port {
    std::string host;
    std::uint16_t port = 0;
    std::string to_string() const;  // brackets IPv6 literals again
    bool operator==(const host_port&) const = default;
};

struct keepalive_config {
    std::chrono::seconds idle{60};
    std::chrono::seconds interval{10};
    int probes = 6;
    bool operator==(const keepalive_config&) const = default;
};

struct timeouts_config {
    duration connect = 5s;
    std::optional<duration> idle = 1h;          // no byte either way; nullopt = off
    std::optional<duration> half_close = 60s;  // one direction finished, the other idle
    std::optional<duration> max_lifetime;       // off by default
    duration rst_flush = 1s;  // bytes already read still leave before an RST is passed on
    duration handshake = 10s;  // forward modes: the whole CONNECT head / SOCKS5 negotiation
    // Forward modes: after an error reply, how long the client's further bytes are read
    // and dropped before the close (nullopt = close at once, which resets a client that
    // is still sending).
    std::optional<duration> lingering_close = 2s;
    bool operator==(const timeouts_config&) const = default;
};

struct upstream_config {
    host_port address;                          // host may be a DNS name, resolved per connection
    std::optional<std::string> source_address;  // IP literal; bound with IP_BIND_ADDRESS_NO_PORT
    close_kind connect_failure = close_kind::abortive_rst;  // rst or close
    bool operator==(const upstream_config&) const = default;
};

// reverse: every client goes to the configured upstream. connect, socks5: forward
// proxy, the client names its destination (HTTP CONNECT, SOCKS5), checked against `acl`.
enum class listener_mode { reverse, connect, socks5 };

// How bytes pass through halfpipe: copy (read into a pooled buffer, write out) or
// splice (socket → kernel pipe → socket with splice(2), never through user space;
// where the kernel cannot splice, the copy path takes over).
enum class relay_mode { copy, splice };

// One allow/deny rule of a forward listener's destination ACL; first match wins,
// no match denies. Absent fields match anything; at least one is present.
struct acl_rule {
    bool allow = false;
    std::optional<std::string> cidr;   // "10.0.0.0/8", "::1/128"
    std::optional<std::string> host;   // "example.org", "*.example.org"
    std::optional<std::string> ports;  // "443", "80,443", "1024-65535"
    bool operator==(const acl_rule&) const = default;
};

// One user of a forward listener, from its users file. password_hash is a crypt(3)
// string (yescrypt "$y$", bcrypt "$2b$", SHA-512 crypt "$6$"); no plain text.
struct proxy_user {
    std::string name;
    std::string password_hash;
    bool operator==(const proxy_user&) const = default;
};

// Forward listeners only: clients must authenticate (HTTP Basic proxy credentials,
// SOCKS5 username/password). The users are read once, when the config is loaded.
struct auth_config {
    std::string users_file;            // as written in the config
    std::vector<proxy_user> users;     // its contents, validated
    std::string realm = "halfpipe";    // Proxy-Authenticate realm (CONNECT)
    // A verified user/password pair is remembered this long, so that a client opening
    // many tunnels pays the slow password hash once; nullopt = verify every time.
    std::optional<duration> cache = 5min;
    bool operator==(const auth_config&) const = default;
};

struct listener_config {
    std::string name;
    listener_mode mode = listener_mode::reverse;
    // Forward modes; empty means the safe default: loopback destinations only.
    std::vector<acl_rule> acl;
    std::optional<auth_config> auth;  // forward modes; nullopt: no credentials asked
    std::vector<host_port> bind;  // IP literals only (IPv4 or IPv6)
    upstream_config upstream;  // reverse mode only
    timeouts_config timeouts;
    std::size_t buffer_size = 64 * 1024;  // per direction, borrowed only while bytes move (pipe size with splice)
    relay_mode relay = relay_mode::copy;
    std::optional<std::size_t> max_connections;
    int backlog = 4096;
    bool tcp_nodelay = true;
    std::optional<keepalive_config> keepalive;
    // How halfpipe closes when it is the one ending a connection (timeouts, errors,
    // limits, drain expiry). rst leaves no TIME_WAIT on halfpipe's side.
    close_kind linger = close_kind::abortive_rst;
    bool operator==(const listener_config&) const = default;
};

// off: the kernel moves worker threads between cores as it likes. spread: worker i
// runs on the i-th core of those the process may use (wrapping round), so a worker
// keeps its caches and is never queued behind its sibling on one core.
enum class cpu_affinity { off, spread };

struct config {
    unsigned workers = 0;  // resolved on load: 0 in YAML (or absent) means one per core
    enum cpu_affinity cpu_affinity = cpu_affinity::off;
    duration drain_timeout = 30s;
    // A host-name lookup gives up after about this long (each DNS server in resolv.conf
    // asked once, for its share); nullopt: resolv.conf's own timeout and attempts.
    std::optional<duration> resolve_timeout = 5s;
    bool access_log = true;
    std::optional<host_port> admin = host_port{"127.0.0.1", 9901};
    std::optional<std::string> admin_token;  // when set, POSTs to the admin endpoint need "Bearer <token>"
    std::vector<listener_config> listeners;
    bool operator==(const config&) const = default;
};

// Thrown for any invalid configuration. what() names the source, line, and key.
struct config_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// YAML text → validated config. source_name appears in error messages ("halfpipe.yaml:12: ...").
// A relative auth.users_file is read relative to the directory of the config file
// (load_file) or to the current directory (load_string).
config load_string(const std::string& yaml_text, const std::string& source_name = "<string>");
config load_file(const std::string& path);

// The built-in config used when neither --config nor --listen is given (documented in README).
config default_config();

// The quick form: one listener "default" from --listen to --upstream, defaults otherwise.
config quick_config(const std::string& listen, const std::string& upstream);
// The quick forward form: --listen with --mode connect|socks5 (loopback-only ACL).
config quick_forward_config(const std::string& listen, listener_mode mode);

std::string_view to_string(listener_mode mode) noexcept;
std::optional<listener_mode> parse_listener_mode(std::string_view text) noexcept;
std::string_view to_string(relay_mode mode) noexcept;
std::optional<relay_mode> parse_relay_mode(std::string_view text) noexcept;
std::string_view to_string(cpu_affinity affinity) noexcept;
std::optional<cpu_affinity> parse_cpu_affinity(std::string_view text) noexcept;

// Parsers shared by the loader and the command line; throw config_error on bad input.
host_port parse_host_port(const std::string& text, bool require_ip_literal);
// "250ms", "5s", "2m", "1h", "1h30m"; "off" → nullopt (only where allow_off)
std::optional<duration> parse_duration(const std::string& text, bool allow_off);
std::size_t parse_size(const std::string& text);  // "65536", "64KiB", "1MiB"
bool is_ip_literal(const std::string& host);

inline constexpr unsigned max_workers = 1024;
// 0 → one worker per core (at least one, as hardware_concurrency() may not know).
unsigned resolve_workers(unsigned requested) noexcept;

}  // namespace halfpipe::config
