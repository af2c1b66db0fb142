#include "common/destination/destination_acl.hpp"

#include <algorithm>
#include <stdexcept>

namespace halfpipe::forward {
namespace {

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

std::string_view without_trailing_dot(std::string_view s) noexcept {
    if (!s.empty() && s.back() == '.') s.remove_suffix(1);
    return s;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

[[noreturn]] void invalid(std::string message) { throw std::invalid_argument(std::move(message)); }

// Numbers 0..max with 1..digits digits; nullopt otherwise.
std::optional<unsigned> parse_number(std::string_view s, unsigned max) noexcept {
    if (s.empty() || s.size() > 5 || !std::all_of(s.begin(), s.end(), is_digit)) return std::nullopt;
    unsigned v = 0;
    for (char c : s) v = v * 10 + unsigned(c - '0');
    if (v > max) return std::nullopt;
    return v;
}

cidr parse_cidr(std::string_view text) {
    const auto what = [&] { return "invalid cidr " + quoted(text) + ": "; };
    const auto t = trim(text);
    const auto slash = t.find('/');
    const auto addr_text = t.substr(0, slash);
    auto addr = ip_address::parse(addr_text);
    if (!addr) invalid(what() + quoted(addr_text) + " is not an IPv4 or IPv6 address");
    const unsigned bits = addr->v6 ? 128 : 32;
    unsigned prefix = bits;
    if (slash != std::string_view::npos) {
        auto p = parse_number(t.substr(slash + 1), bits);
        if (!p) invalid(what() + "prefix length must be a number 0.." + std::to_string(bits));
        prefix = *p;
    }
    cidr c{*addr, prefix};
    cidr masked = c;
    for (unsigned i = 0; i < 16; ++i) {
        const unsigned bit0 = i * 8;
        std::uint8_t mask = 0;
        if (prefix >= bit0 + 8)
            mask = 0xff;
        else if (prefix > bit0)
            mask = std::uint8_t(0xff << (8 - (prefix - bit0)));
        masked.network.bytes[i] &= mask;
    }
    if (!(masked.network == c.network))
        invalid(what() + "host bits are set (network would be " + masked.to_string() + ")");
    // ::ffff:a.b.c.d/96+n is the IPv4 network a.b.c.d/n: mapped addresses are checked as IPv4.
    if (c.network.is_v4_mapped() && prefix >= 96) return cidr{c.network.unmapped(), prefix - 96};
    return c;
}

host_pattern parse_host_pattern(std::string_view text) {
    const auto what = [&] { return "invalid host " + quoted(text) + ": "; };
    auto t = trim(text);
    if (t == "*") return host_pattern{host_pattern::kind::any, {}};
    host_pattern p;
    if (t.size() >= 2 && t.substr(0, 2) == "*.") {
        p.match = host_pattern::kind::subdomains;
        t.remove_prefix(2);
    }
    if (t.find('*') != std::string_view::npos) invalid(what() + "a wildcard is only allowed as a leading \"*.\" or as \"*\"");
    if (ip_address::parse(t) || (t.size() > 2 && t.front() == '[' && t.back() == ']'))
        invalid(what() + "an IP address is not a host name; use cidr");
    if (!is_valid_host_name(t)) invalid(what() + "not a valid host name");
    t = without_trailing_dot(t);
    p.name.reserve(t.size());
    for (char c : t) p.name += lower(c);
    return p;
}

std::vector<port_range> parse_ports(std::string_view text) {
    const auto what = [&] { return "invalid ports " + quoted(text) + ": "; };
    std::vector<port_range> out;
    if (trim(text).empty()) invalid(what() + "empty (leave ports out for every port)");
    std::size_t start = 0;
    while (true) {
        const auto comma = text.find(',', start);
        const auto item = trim(text.substr(start, comma == std::string_view::npos ? text.npos : comma - start));
        if (item.empty()) invalid(what() + "empty entry");
        const auto dash = item.find('-');
        const auto first_text = trim(item.substr(0, dash));
        const auto last_text = dash == std::string_view::npos ? first_text : trim(item.substr(dash + 1));
        const auto first = parse_number(first_text, 65535);
        const auto last = parse_number(last_text, 65535);
        if (!first || !last || *first == 0 || *last == 0)
            invalid(what() + quoted(item) + " is not a port 1..65535 or a range of them");
        if (*first > *last) invalid(what() + "range " + quoted(item) + " runs backwards");
        out.push_back({std::uint16_t(*first), std::uint16_t(*last)});
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    return out;
}

}  // namespace

bool cidr::contains(const ip_address& address) const noexcept {
    if (address.v6 != network.v6) return false;
    const unsigned full = prefix / 8;
    for (unsigned i = 0; i < full; ++i)
        if (address.bytes[i] != network.bytes[i]) return false;
    const unsigned rest = prefix % 8;
    if (rest == 0) return true;
    const std::uint8_t mask = std::uint8_t(0xff << (8 - rest));
    return (address.bytes[full] & mask) == network.bytes[full];
}

std::string cidr::to_string() const { return network.to_string() + "/" + std::to_string(prefix); }

bool host_pattern::matches(std::string_view host) const noexcept {
    host = without_trailing_dot(host);
    switch (match) {
        case kind::any: return !host.empty();
        case kind::exact: return iequals(host, name);
        case kind::subdomains:
            // "*.example.org": at least one label before ".example.org".
            return host.size() > name.size() + 1 && host[host.size() - name.size() - 1] == '.' &&
                   iequals(host.substr(host.size() - name.size()), name);
    }
    return false;
}

std::string host_pattern::to_string() const {
    switch (match) {
        case kind::any: return "*";
        case kind::exact: return name;
        case kind::subdomains: return "*." + name;
    }
    return name;
}

bool acl_rule::matches_port(std::uint16_t port) const noexcept {
    if (ports.empty()) return true;
    return std::any_of(ports.begin(), ports.end(), [port](const port_range& r) { return port >= r.first && port <= r.last; });
}

std::string acl_rule::to_string() const {
    std::string out = allow ? "allow" : "deny";
    if (network) out += " cidr=" + network->to_string();
    if (host) out += " host=" + host->to_string();
    if (!ports.empty()) {
        out += " ports=";
        for (std::size_t i = 0; i < ports.size(); ++i) {
            if (i) out += ',';
            out += std::to_string(ports[i].first);
            if (ports[i].last != ports[i].first) out += "-" + std::to_string(ports[i].last);
        }
    }
    if (!network && !host && ports.empty()) out += " (everything)";
    return out;
}

acl_rule parse_rule(std::string_view action, std::optional<std::string_view> cidr_text,
                    std::optional<std::string_view> host, std::optional<std::string_view> ports) {
    acl_rule r;
    const auto a = trim(action);
    if (a == "allow")
        r.allow = true;
    else if (a == "deny")
        r.allow = false;
    else
        invalid("invalid action " + quoted(action) + ": expected \"allow\" or \"deny\"");
    if (cidr_text) r.network = parse_cidr(*cidr_text);
    if (host) r.host = parse_host_pattern(*host);
    if (ports) r.ports = parse_ports(*ports);
    return r;
}

destination_acl::destination_acl(std::vector<acl_rule> rules) : rules_(std::move(rules)) {}

destination_acl destination_acl::loopback_only() {
    return destination_acl({parse_rule("allow", "127.0.0.0/8", std::nullopt, std::nullopt),
                            parse_rule("allow", "::1/128", std::nullopt, std::nullopt)});
}

acl_decision destination_acl::evaluate(std::optional<std::string_view> name, const std::optional<ip_address>& address,
                                       std::uint16_t port) const {
    // With both name and address known every rule either matches or not. With only a name,
    // a network criterion is unknown: an allow rule that could match makes the answer a
    // provisional allow; a deny rule that could match is skipped, but whatever comes after
    // it is provisional too, since that deny may still catch the address.
    const std::optional<ip_address> addr = address ? std::optional(address->unmapped()) : std::nullopt;
    bool unknown_seen = false;
    for (std::size_t i = 0; i < rules_.size(); ++i) {
        const auto& r = rules_[i];
        if (!r.matches_port(port)) continue;
        if (r.host && (!name || !r.host->matches(*name))) continue;
        if (r.network) {
            if (!addr) {
                if (r.allow) return {true, i, true};
                unknown_seen = true;
                continue;
            }
            if (!r.network->contains(*addr)) continue;
        }
        return {r.allow, i, r.allow && unknown_seen};
    }
    return {false, std::nullopt, false};
}

acl_decision destination_acl::check_name(std::string_view host, std::uint16_t port) const {
    std::string_view literal = host;
    if (literal.size() > 2 && literal.front() == '[' && literal.back() == ']') literal = literal.substr(1, literal.size() - 2);
    if (auto ip = ip_address::parse(literal)) return evaluate(std::nullopt, *ip, port);
    return evaluate(host, std::nullopt, port);
}

acl_decision destination_acl::check_address(const std::array<std::uint8_t, 16>& addr, bool v6, std::uint16_t port) const {
    return evaluate(std::nullopt, ip_address::from_bytes(addr, v6), port);
}

acl_decision destination_acl::check_address(std::string_view requested_name, const std::array<std::uint8_t, 16>& addr,
                                            bool v6, std::uint16_t port) const {
    return check_address(requested_name, ip_address::from_bytes(addr, v6), port);
}

acl_decision destination_acl::check_address(std::string_view requested_name, const ip_address& address,
                                            std::uint16_t port) const {
    // An IP-literal "name" is not a name: host rules never match it.
    std::string_view literal = requested_name;
    if (literal.size() > 2 && literal.front() == '[' && literal.back() == ']') literal = literal.substr(1, literal.size() - 2);
    if (requested_name.empty() || ip_address::parse(literal)) return evaluate(std::nullopt, address, port);
    return evaluate(requested_name, address, port);
}

std::string destination_acl::describe(const acl_decision& d) const {
    std::string out = d.allowed ? (d.provisional ? "provisionally allowed" : "allowed") : "denied";
    if (!d.rule) return out + ": no rule matched";
    out += " by rule " + std::to_string(*d.rule);
    if (*d.rule < rules_.size()) out += " (" + rules_[*d.rule].to_string() + ")";
    return out;
}

}  // namespace halfpipe::forward
