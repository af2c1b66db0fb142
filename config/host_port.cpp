// host:port parsing shared by the YAML loader and the command line.
#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

#include "config/config.hpp"

namespace halfpipe::config {
namespace {

[[noreturn]] void fail(const std::string& text, const std::string& why) {
    throw config_error("invalid address \"" + text + "\": " + why);
}

bool is_ipv4_literal(const std::string& host) {
    in_addr addr{};
    return ::inet_pton(AF_INET, host.c_str(), &addr) == 1;
}

bool is_ipv6_literal(const std::string& host) {
    in6_addr addr{};
    return ::inet_pton(AF_INET6, host.c_str(), &addr) == 1;
}

// RFC 1123 host names. Underscores are tolerated because internal DNS zones use
// them in practice and the resolver passes them through.
bool is_host_name(const std::string& host) {
    if (host.empty() || host.size() > 253) return false;
    std::size_t label_length = 0;
    for (std::size_t i = 0; i < host.size(); ++i) {
        const char c = host[i];
        if (c == '.') {
            // A single trailing dot (fully qualified form) is fine; empty labels are not.
            if (label_length == 0 || host[i - 1] == '-') return false;
            label_length = 0;
            continue;
        }
        const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-' && c != '_') return false;
        if (c == '-' && label_length == 0) return false;
        if (++label_length > 63) return false;
    }
    return host.back() != '-';
}

std::uint16_t parse_port(const std::string& text, const std::string& port_text) {
    if (port_text.empty()) fail(text, "missing port");
    if (!std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        fail(text, "port \"" + port_text + "\" is not a number");
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || value > 65535)
        fail(text, "port " + port_text + " is out of range (0..65535)");
    return static_cast<std::uint16_t>(value);
}

}  // namespace

bool is_ip_literal(const std::string& host) { return is_ipv4_literal(host) || is_ipv6_literal(host); }

std::string host_port::to_string() const {
    const bool needs_brackets = host.find(':') != std::string::npos;
    return (needs_brackets ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

host_port parse_host_port(const std::string& text, bool require_ip_literal) {
    const char* const example =
        require_ip_literal ? "127.0.0.1:8080 or [::1]:8080" : "backend.local:9000, 10.0.0.5:9000 or [::1]:9000";
    if (text.empty()) fail(text, std::string("empty (expected e.g. ") + example + ")");

    host_port result;
    std::string port_text;
    if (text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string::npos) fail(text, "missing ']' after the IPv6 address");
        result.host = text.substr(1, close - 1);
        if (!is_ipv6_literal(result.host)) fail(text, "\"" + result.host + "\" is not an IPv6 address");
        if (close + 1 >= text.size() || text[close + 1] != ':')
            fail(text, std::string("missing port (expected e.g. ") + example + ")");
        port_text = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string::npos) fail(text, std::string("missing port (expected e.g. ") + example + ")");
        result.host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        if (result.host.find(':') != std::string::npos) {
            // Without brackets the last colon could belong to the address itself.
            fail(text, "IPv6 addresses must be in brackets, e.g. [::1]:8080");
        }
        if (result.host.empty()) fail(text, std::string("missing host (expected e.g. ") + example + ")");
        const bool looks_numeric = std::all_of(result.host.begin(), result.host.end(),
                                               [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
        if (!is_ipv4_literal(result.host)) {
            // "10.0.0.300" must not slip through as a host name for DNS to reject later.
            if (looks_numeric) fail(text, "\"" + result.host + "\" is not a valid IPv4 address");
            if (require_ip_literal)
                fail(text, "\"" + result.host + "\" is not an IP address (host names are not allowed here)");
            if (!is_host_name(result.host)) fail(text, "\"" + result.host + "\" is not a valid host name");
        }
    }
    result.port = parse_port(text, port_text);
    return result;
}

}  // namespace halfpipe::config
