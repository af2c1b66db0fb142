#include "server/forward/socks5.hpp"

#include <cstdio>
#include <stdexcept>

namespace halfpipe::forward {
namespace {

constexpr std::uint8_t socks_version = 0x05;
constexpr std::uint8_t auth_version = 0x01;  // RFC 1929 sub-negotiation version
constexpr std::uint8_t method_none = 0x00;
constexpr std::uint8_t method_username_password = 0x02;
constexpr std::uint8_t method_none_acceptable = 0xff;
constexpr std::uint8_t atyp_ipv4 = 0x01;
constexpr std::uint8_t atyp_domain = 0x03;
constexpr std::uint8_t atyp_ipv6 = 0x04;

std::string hex_byte(std::uint8_t b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02x", unsigned(b));
    return buf;
}

std::uint8_t byte_at(const std::string& s, std::size_t i) noexcept { return static_cast<std::uint8_t>(s[i]); }

}  // namespace

std::string_view to_string(socks5_reply code) noexcept {
    switch (code) {
        case socks5_reply::succeeded: return "succeeded";
        case socks5_reply::general_failure: return "general SOCKS server failure";
        case socks5_reply::not_allowed: return "connection not allowed by ruleset";
        case socks5_reply::network_unreachable: return "network unreachable";
        case socks5_reply::host_unreachable: return "host unreachable";
        case socks5_reply::connection_refused: return "connection refused";
        case socks5_reply::ttl_expired: return "TTL expired";
        case socks5_reply::command_not_supported: return "command not supported";
        case socks5_reply::address_type_not_supported: return "address type not supported";
    }
    return "unknown";
}

socks5_reply socks5_reply_for(connect_failure failure) noexcept {
    switch (failure) {
        case connect_failure::denied: return socks5_reply::not_allowed;
        case connect_failure::resolve_failed: return socks5_reply::host_unreachable;
        case connect_failure::refused: return socks5_reply::connection_refused;
        case connect_failure::network_unreachable: return socks5_reply::network_unreachable;
        case connect_failure::host_unreachable: return socks5_reply::host_unreachable;
        case connect_failure::timed_out: return socks5_reply::ttl_expired;
        case connect_failure::address_unavailable:
        case connect_failure::other: return socks5_reply::general_failure;
    }
    return socks5_reply::general_failure;
}

std::string socks5_reply_bytes(socks5_reply code, const ip_address& bound, std::uint16_t bound_port) {
    std::string out;
    out.reserve(22);
    out += char(socks_version);
    out += char(code);
    out += char(0x00);
    out += char(bound.v6 ? atyp_ipv6 : atyp_ipv4);
    out.append(reinterpret_cast<const char*>(bound.bytes.data()), bound.v6 ? 16 : 4);
    out += char(bound_port >> 8);
    out += char(bound_port & 0xff);
    return out;
}

socks5_session::socks5_session(socks5_options options) : options_(options) {}

socks5_result socks5_session::fail(std::string reply, std::string why) {
    phase_ = phase::failed;
    in_.clear();
    error_ = std::move(why);
    socks5_result r;
    r.state = socks5_result::status::failed;
    r.reply = std::move(reply);
    r.error = error_;
    return r;
}

socks5_result socks5_session::feed(std::string_view bytes) {
    if (phase_ == phase::failed) return run({});
    in_.append(bytes);
    return run({});
}

socks5_result socks5_session::auth_verdict(bool ok) {
    if (phase_ != phase::auth_pending) throw std::logic_error("socks5_session::auth_verdict without a pending authentication");
    username_.clear();
    password_.clear();
    if (!ok) return fail(std::string{char(auth_version), char(0x01)}, "username/password rejected");
    phase_ = phase::request;
    return run(std::string{char(auth_version), char(0x00)});
}

std::string_view socks5_session::pipelined() const noexcept {
    return phase_ == phase::requested ? std::string_view(in_) : std::string_view();
}

std::string socks5_session::take_pipelined() {
    if (phase_ != phase::requested) return {};
    std::string out;
    out.swap(in_);
    return out;
}

socks5_result socks5_session::run(std::string reply) {
    using st = socks5_result::status;
    auto need_more = [&] {
        socks5_result r;
        r.state = st::need_more;
        r.reply = std::move(reply);
        return r;
    };
    while (true) {
        switch (phase_) {
            case phase::greeting: {
                // VER NMETHODS METHODS[NMETHODS]
                if (in_.empty()) return need_more();
                if (byte_at(in_, 0) != socks_version)
                    return fail(std::move(reply), "not a SOCKS5 greeting: version byte " + hex_byte(byte_at(in_, 0)));
                if (in_.size() < 2) return need_more();
                const std::size_t n = byte_at(in_, 1);
                if (in_.size() < 2 + n) return need_more();
                const std::uint8_t wanted = options_.auth == socks5_auth::none ? method_none : method_username_password;
                const bool offered = in_.find(char(wanted), 2) < 2 + n;
                in_.erase(0, 2 + n);
                if (!offered) {
                    reply += char(socks_version);
                    reply += char(method_none_acceptable);
                    auto r = fail(std::move(reply), std::string("no acceptable authentication method: client did not offer ") +
                                                        (wanted == method_none ? "no-auth (0x00)" : "username/password (0x02)"));
                    r.no_acceptable_method = true;
                    return r;
                }
                reply += char(socks_version);
                reply += char(wanted);
                phase_ = wanted == method_none ? phase::request : phase::auth;
                break;
            }
            case phase::auth: {
                // VER=1 ULEN UNAME[ULEN] PLEN PASSWD[PLEN]
                if (in_.empty()) return need_more();
                if (byte_at(in_, 0) != auth_version) {
                    reply += char(auth_version);
                    reply += char(0x01);
                    return fail(std::move(reply), "username/password request with version byte " + hex_byte(byte_at(in_, 0)));
                }
                if (in_.size() < 2) return need_more();
                const std::size_t ulen = byte_at(in_, 1);
                if (in_.size() < 3 + ulen) return need_more();
                const std::size_t plen = byte_at(in_, 2 + ulen);
                if (in_.size() < 3 + ulen + plen) return need_more();
                username_ = in_.substr(2, ulen);
                password_ = in_.substr(3 + ulen, plen);
                in_.erase(0, 3 + ulen + plen);
                phase_ = phase::auth_pending;
                socks5_result r;
                r.state = st::authenticate;
                r.reply = std::move(reply);
                r.username = username_;
                r.password = password_;
                return r;
            }
            case phase::auth_pending:
            case phase::requested: return need_more();
            case phase::request: {
                // VER=5 CMD RSV ATYP DST.ADDR DST.PORT
                if (in_.empty()) return need_more();
                if (byte_at(in_, 0) != socks_version) {
                    const auto v = byte_at(in_, 0);
                    return fail(reply + socks5_reply_bytes(socks5_reply::general_failure),
                                "request with version byte " + hex_byte(v));
                }
                if (in_.size() < 4) return need_more();
                const std::uint8_t cmd = byte_at(in_, 1);
                // RSV (in_[2]) must be 0 per RFC 1928; clients that send junk there are tolerated.
                const std::uint8_t atyp = byte_at(in_, 3);
                if (cmd != std::uint8_t(socks5_command::connect)) {
                    const char* name = cmd == 0x02 ? " (BIND)" : cmd == 0x03 ? " (UDP ASSOCIATE)" : "";
                    return fail(reply + socks5_reply_bytes(socks5_reply::command_not_supported),
                                "command " + hex_byte(cmd) + name + " not supported");
                }
                std::size_t addr_offset = 4;
                std::size_t addr_len = 0;
                if (atyp == atyp_ipv4) {
                    addr_len = 4;
                } else if (atyp == atyp_ipv6) {
                    addr_len = 16;
                } else if (atyp == atyp_domain) {
                    if (in_.size() < 5) return need_more();
                    addr_len = byte_at(in_, 4);
                    addr_offset = 5;
                    if (addr_len == 0)
                        return fail(reply + socks5_reply_bytes(socks5_reply::general_failure), "empty domain name");
                } else {
                    return fail(reply + socks5_reply_bytes(socks5_reply::address_type_not_supported),
                                "address type " + hex_byte(atyp) + " not supported");
                }
                const std::size_t total = addr_offset + addr_len + 2;
                if (in_.size() < total) return need_more();
                const std::uint16_t port =
                    std::uint16_t((std::uint16_t(byte_at(in_, total - 2)) << 8) | byte_at(in_, total - 1));
                socks5_request req;
                req.address_type = atyp;
                if (atyp == atyp_domain) {
                    auto t = make_target(std::string_view(in_).substr(addr_offset, addr_len), port);
                    if (!t)
                        return fail(reply + socks5_reply_bytes(socks5_reply::host_unreachable),
                                    "invalid domain name (" + std::to_string(addr_len) + " bytes)");
                    req.target = std::move(*t);
                } else {
                    std::array<std::uint8_t, 16> raw{};
                    for (std::size_t i = 0; i < addr_len; ++i) raw[i] = byte_at(in_, addr_offset + i);
                    req.target.address = ip_address::from_bytes(raw, atyp == atyp_ipv6);
                    req.target.kind = atyp == atyp_ipv6 ? host_kind::ipv6 : host_kind::ipv4;
                    req.target.host = req.target.address.to_string();
                    req.target.port = port;
                }
                in_.erase(0, total);
                request_ = std::move(req);
                phase_ = phase::requested;
                socks5_result r;
                r.state = st::request;
                r.reply = std::move(reply);
                return r;
            }
            case phase::failed: {
                socks5_result r;
                r.state = st::failed;
                r.reply = std::move(reply);
                r.error = error_;
                return r;
            }
        }
    }
}

}  // namespace halfpipe::forward
