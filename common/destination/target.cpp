#include "common/destination/target.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace halfpipe::forward {
namespace {

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
bool is_hex(char c) noexcept { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::optional<std::array<std::uint8_t, 4>> parse_dotted_quad(std::string_view text) noexcept {
    std::array<std::uint8_t, 4> out{};
    std::size_t part = 0;
    std::size_t i = 0;
    while (true) {
        const std::size_t start = i;
        unsigned value = 0;
        while (i < text.size() && is_digit(text[i])) {
            if (i - start == 3) return std::nullopt;
            value = value * 10 + unsigned(text[i] - '0');
            ++i;
        }
        const std::size_t len = i - start;
        if (len == 0 || value > 255 || (len > 1 && text[start] == '0')) return std::nullopt;
        out[part++] = std::uint8_t(value);
        if (part == 4) return i == text.size() ? std::optional(out) : std::nullopt;
        if (i == text.size() || text[i] != '.') return std::nullopt;
        ++i;
    }
}

// True for a label that a resolver's inet_aton fallback would read as a number.
bool is_numeric_label(std::string_view label) noexcept {
    if (label.empty()) return false;
    if (std::all_of(label.begin(), label.end(), is_digit)) return true;
    if (label.size() >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X'))
        return std::all_of(label.begin() + 2, label.end(), is_hex);
    return false;
}

}  // namespace

ip_address ip_address::v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) noexcept {
    ip_address ip;
    ip.bytes[0] = a;
    ip.bytes[1] = b;
    ip.bytes[2] = c;
    ip.bytes[3] = d;
    return ip;
}

ip_address ip_address::from_bytes(const std::array<std::uint8_t, 16>& bytes, bool v6) noexcept {
    ip_address ip;
    ip.v6 = v6;
    if (v6)
        ip.bytes = bytes;
    else
        std::copy_n(bytes.begin(), 4, ip.bytes.begin());
    return ip;
}

std::optional<ip_address> ip_address::parse(std::string_view text) noexcept {
    if (auto quad = parse_dotted_quad(text)) return v4((*quad)[0], (*quad)[1], (*quad)[2], (*quad)[3]);
    // Longest IPv6 text is 45 characters ("ffff:...:255.255.255.255"); only [0-9a-fA-F:.] may occur.
    if (text.empty() || text.size() > 45) return std::nullopt;
    if (text.find(':') == std::string_view::npos) return std::nullopt;
    if (!std::all_of(text.begin(), text.end(), [](char c) { return is_hex(c) || c == ':' || c == '.'; }))
        return std::nullopt;
    char buf[46];
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    ip_address ip;
    ip.v6 = true;
    if (inet_pton(AF_INET6, buf, ip.bytes.data()) != 1) return std::nullopt;
    return ip;
}

bool ip_address::is_v4_mapped() const noexcept {
    if (!v6) return false;
    for (int i = 0; i < 10; ++i)
        if (bytes[i] != 0) return false;
    return bytes[10] == 0xff && bytes[11] == 0xff;
}

ip_address ip_address::unmapped() const noexcept {
    if (!is_v4_mapped()) return *this;
    return v4(bytes[12], bytes[13], bytes[14], bytes[15]);
}

std::string ip_address::to_string() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (!inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof buf)) return {};
    return buf;
}

bool is_valid_host_name(std::string_view name) noexcept {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    if (name.empty() || name.size() > 253) return false;
    std::string_view last_label;
    std::size_t start = 0;
    while (true) {
        const std::size_t dot = name.find('.', start);
        const std::string_view label = name.substr(start, dot == std::string_view::npos ? name.npos : dot - start);
        if (label.empty() || label.size() > 63) return false;
        for (char c : label)
            if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_') return false;
        last_label = label;
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    return !is_numeric_label(last_label);
}

std::string target::authority() const {
    std::string out;
    if (kind == host_kind::ipv6) {
        out.reserve(host.size() + 8);
        out += '[';
        out += host;
        out += ']';
    } else {
        out = host;
    }
    out += ':';
    out += std::to_string(port);
    return out;
}

std::optional<target> make_target(std::string_view host, std::uint16_t port) {
    if (auto ip = ip_address::parse(host))
        return target{std::string(host), ip->v6 ? host_kind::ipv6 : host_kind::ipv4, *ip, port};
    if (is_valid_host_name(host)) return target{std::string(host), host_kind::name, {}, port};
    return std::nullopt;
}

}  // namespace halfpipe::forward
