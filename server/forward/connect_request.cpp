#include "server/forward/connect_request.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>

namespace halfpipe::forward {
namespace http = boost::beast::http;

namespace {

bool is_tchar(char c) noexcept {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_ctl(unsigned char c) noexcept { return c < 0x20 || c == 0x7f; }

// At most 80 characters of client text for a log line; Beast already limited the target
// to printable characters without spaces.
std::string quoted_excerpt(std::string_view text) {
    constexpr std::size_t max = 80;
    std::string out = "\"";
    out += text.substr(0, max);
    out += text.size() > max ? "\"..." : "\"";
    return out;
}

struct authority_result {
    std::optional<target> value;
    std::string error;
};

// authority-form (RFC 9112 §3.2.3): uri-host ":" port, the port mandatory and 1..65535.
authority_result parse_authority(std::string_view text) {
    std::string_view host;
    std::string_view port_text;
    bool bracketed = false;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) return {{}, "unterminated IPv6 literal"};
        host = text.substr(1, close - 1);
        const auto rest = text.substr(close + 1);
        if (rest.empty() || rest.front() != ':') return {{}, "missing port"};
        port_text = rest.substr(1);
        bracketed = true;
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) return {{}, "missing port"};
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) return {{}, "IPv6 literal without brackets"};
    }
    if (host.empty()) return {{}, "empty host"};
    if (port_text.empty()) return {{}, "missing port"};
    if (port_text.size() > 5 || !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return {{}, "port is not a number 1..65535"};
    unsigned port = 0;
    for (char c : port_text) port = port * 10 + unsigned(c - '0');
    if (port == 0 || port > 65535) return {{}, "port is not a number 1..65535"};
    auto t = make_target(host, std::uint16_t(port));
    if (!t) return {{}, bracketed ? "invalid IPv6 literal" : "invalid host name"};
    if (bracketed != (t->kind == host_kind::ipv6)) return {{}, bracketed ? "invalid IPv6 literal" : "IPv6 literal without brackets"};
    return {std::move(t), {}};
}

// Beast reports both "HTTP/2.0" and "HTTP/1.1x" as bad_version; only the first is 505.
bool is_unsupported_version(std::string_view buffered) {
    const auto eol = buffered.find_first_of("\r\n");
    const auto line = buffered.substr(0, eol);
    const auto sp = line.rfind(' ');
    if (sp == std::string_view::npos) return false;
    const auto v = line.substr(sp + 1);
    auto digit = [](char c) { return c >= '0' && c <= '9'; };
    return v.size() == 8 && v.substr(0, 5) == "HTTP/" && digit(v[5]) && v[6] == '.' && digit(v[7]) &&
           v != "HTTP/1.0" && v != "HTTP/1.1";
}

}  // namespace

struct connect_head_parser::impl {
    http::request_parser<http::empty_body> parser;
    std::string buffer;  // fed but not yet consumed by the parser
    std::size_t limit;
    std::size_t consumed_total = 0;  // bytes of the head the parser has consumed
    bool method_checked = false;  // our early look at the method token
    bool request_line_checked = false;
    connect_parse_result::status state = connect_parse_result::status::need_more;
    int http_status = 0;
    std::string detail;
    connect_head head;

    explicit impl(std::size_t header_limit) : limit(header_limit) {
        // We present at most `limit` bytes of head in total and decide 431 ourselves, so
        // Beast's own limit (which counts the request line and the fields separately) must
        // never fire first.
        const std::size_t beast_limit = std::min<std::size_t>(limit, std::numeric_limits<std::uint32_t>::max() - 1) + 1;
        parser.header_limit(static_cast<std::uint32_t>(beast_limit));
        parser.eager(false);
        parser.skip(true);  // CONNECT has no body: what follows the head is tunnel payload
    }

    connect_parse_result fail(int status, std::string why) {
        state = connect_parse_result::status::error;
        http_status = status;
        detail = std::move(why);
        buffer.clear();
        buffer.shrink_to_fit();
        return {state, 0, http_status, detail};
    }

    // Called once the request line is in: method, target and version.
    std::optional<connect_parse_result> check_request_line() {
        request_line_checked = true;
        const auto& req = parser.get();
        if (req.method() != http::verb::connect) {
            const auto m = req.method_string();
            return fail(405, "method " + quoted_excerpt(std::string_view(m.data(), m.size())) + " is not CONNECT");
        }
        const auto t = req.target();
        auto authority = parse_authority(std::string_view(t.data(), t.size()));
        if (!authority.value)
            return fail(400, "request-target " + quoted_excerpt(std::string_view(t.data(), t.size())) +
                                 " is not host:port: " + authority.error);
        head.target = std::move(*authority.value);
        head.version = req.version();
        return std::nullopt;
    }

    std::optional<connect_parse_result> check_fields() {
        const auto& req = parser.get();
        if (req.count(http::field::transfer_encoding) != 0) return fail(400, "CONNECT with Transfer-Encoding");
        if (auto length = parser.content_length(); length && *length != 0)
            return fail(400, "CONNECT with non-zero Content-Length");
        const auto auth_count = req.count(http::field::proxy_authorization);
        if (auth_count > 1) return fail(400, "more than one Proxy-Authorization field");
        if (auth_count == 1) {
            const auto v = req[http::field::proxy_authorization];
            head.proxy_authorization = std::string(v.data(), v.size());
        }
        return std::nullopt;
    }

    connect_parse_result feed(std::string_view bytes) {
        using st = connect_parse_result::status;
        if (state != st::need_more) return {state, 0, http_status, detail};
        buffer.append(bytes);

        // Once Beast has returned need_more it re-parses only when the whole head is in, so
        // judge the method ourselves as soon as its token is complete: a GET, or a client
        // that speaks HTTP to the proxy port by mistake, is refused without waiting for the
        // end of the head. Anything odd about the token is left to Beast (400).
        if (!method_checked) {
            const auto sp = buffer.find(' ');
            if (sp != std::string::npos) {
                method_checked = true;
                const std::string_view method = std::string_view(buffer).substr(0, sp);
                if (!method.empty() && method != "CONNECT" && std::all_of(method.begin(), method.end(), is_tchar))
                    return fail(405, "method " + quoted_excerpt(method) + " is not CONNECT");
            }
        }

        const std::size_t budget = limit - consumed_total;
        const std::size_t shown = std::min(buffer.size(), budget);
        boost::beast::error_code ec;
        const std::size_t n = parser.put(boost::asio::const_buffer(buffer.data(), shown), ec);
        consumed_total += n;

        // Beast consumes the request line only once it is complete, so consumed bytes mean
        // method, target and version are known: reject a GET without waiting for its fields.
        if (consumed_total > 0 && !request_line_checked)
            if (auto r = check_request_line()) return *r;

        if (ec && ec != http::error::need_more) {
            if (ec == http::error::header_limit)
                return fail(431, "request head exceeds " + std::to_string(limit) + " bytes");
            if (ec == http::error::bad_version && is_unsupported_version(std::string_view(buffer).substr(n)))
                return fail(505, "HTTP version not supported (only HTTP/1.0 and HTTP/1.1)");
            return fail(400, "malformed request head: " + ec.message());
        }
        buffer.erase(0, n);

        if (!parser.is_header_done()) {
            // Everything we hold was shown to the parser and holds no complete head: if that is
            // already `limit` bytes, the head is too large.
            if (consumed_total + buffer.size() >= limit)
                return fail(431, "request head exceeds " + std::to_string(limit) + " bytes");
            return {st::need_more, bytes.size(), 0, {}};
        }

        if (auto r = check_fields()) return *r;
        head.size = consumed_total;
        // The head ended inside this feed (earlier feeds held no complete head), so whatever is
        // left over came from `bytes`.
        const std::size_t pipelined = std::min(buffer.size(), bytes.size());
        buffer.clear();
        buffer.shrink_to_fit();
        state = st::done;
        return {st::done, bytes.size() - pipelined, 0, {}};
    }
};

connect_head_parser::connect_head_parser(std::size_t header_limit) : impl_(std::make_unique<impl>(header_limit)) {}
connect_head_parser::~connect_head_parser() = default;
connect_head_parser::connect_head_parser(connect_head_parser&&) noexcept = default;
connect_head_parser& connect_head_parser::operator=(connect_head_parser&&) noexcept = default;

connect_parse_result connect_head_parser::feed(std::string_view bytes) { return impl_->feed(bytes); }
bool connect_head_parser::done() const noexcept { return impl_->state == connect_parse_result::status::done; }
const connect_head& connect_head_parser::head() const noexcept { return impl_->head; }
std::size_t connect_head_parser::header_limit() const noexcept { return impl_->limit; }

std::string_view reason_phrase(int status) noexcept {
    switch (status) {
        case 200: return "Connection established";
        case 400: return "Bad Request";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 407: return "Proxy Authentication Required";
        case 408: return "Request Timeout";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        case 505: return "HTTP Version Not Supported";
        default: return "Unknown";
    }
}

std::string connect_response(int status, std::string_view reason, std::span<const http_header> extra) {
    if (status < 100 || status > 599) throw std::invalid_argument("HTTP status " + std::to_string(status) + " is not 100..599");
    auto bad_text = [](std::string_view s) {
        return std::any_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
    };
    if (reason.empty()) reason = reason_phrase(status);
    if (bad_text(reason)) throw std::invalid_argument("reason phrase contains CR, LF or NUL");
    std::string out = "HTTP/1.1 ";
    out += std::to_string(status);
    out += ' ';
    out += reason;
    out += "\r\n";
    for (const auto& h : extra) {
        if (h.name.empty() || !std::all_of(h.name.begin(), h.name.end(), is_tchar))
            throw std::invalid_argument("header name \"" + std::string(h.name) + "\" is not a token");
        if (bad_text(h.value)) throw std::invalid_argument("value of header " + std::string(h.name) + " contains CR, LF or NUL");
        out += h.name;
        out += ": ";
        out += h.value;
        out += "\r\n";
    }
    if (status >= 300) out += "Content-Length: 0\r\nConnection: close\r\n";
    out += "\r\n";
    return out;
}

std::string connect_response(int status, std::string_view reason, std::initializer_list<http_header> extra) {
    return connect_response(status, reason, std::span<const http_header>(extra.begin(), extra.size()));
}

std::string connection_established() { return connect_response(200); }

std::string proxy_auth_required(std::string_view realm) {
    std::string challenge = "Basic realm=\"";
    for (char c : realm) {
        if (c == '"' || c == '\\') challenge += '\\';
        challenge += c;
    }
    challenge += '"';
    return connect_response(407, {}, {{"Proxy-Authenticate", challenge}});
}

std::string error_response(int status) {
    if (status == 405) return connect_response(405, {}, {{"Allow", "CONNECT"}});
    if (status == 407) return proxy_auth_required();
    return connect_response(status);
}

int http_status_for(connect_failure failure) noexcept {
    switch (failure) {
        case connect_failure::denied: return 403;
        case connect_failure::timed_out: return 504;
        default: return 502;
    }
}

std::optional<std::string> base64_decode(std::string_view text) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    std::size_t padding = 0;
    while (padding < text.size() && padding < 3 && text[text.size() - 1 - padding] == '=') ++padding;
    if (padding > 2) return std::nullopt;
    if (padding > 0 && text.size() % 4 != 0) return std::nullopt;
    const auto data = text.substr(0, text.size() - padding);
    if (data.size() % 4 == 1) return std::nullopt;
    std::string out;
    out.reserve(data.size() * 3 / 4);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : data) {
        const int v = value(c);
        if (v < 0) return std::nullopt;
        acc = (acc << 6) | std::uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += char((acc >> bits) & 0xff);
        }
    }
    return out;
}

std::optional<basic_credentials> decode_basic_credentials(std::string_view field_value) {
    auto is_ws = [](char c) { return c == ' ' || c == '\t'; };
    while (!field_value.empty() && is_ws(field_value.front())) field_value.remove_prefix(1);
    while (!field_value.empty() && is_ws(field_value.back())) field_value.remove_suffix(1);
    const auto sp = std::find_if(field_value.begin(), field_value.end(), is_ws);
    const std::string_view scheme(field_value.begin(), sp);
    if (scheme.size() != 5) return std::nullopt;
    for (std::size_t i = 0; i < 5; ++i)
        if ((scheme[i] | 0x20) != "basic"[i]) return std::nullopt;
    std::string_view token(sp, field_value.end());
    while (!token.empty() && is_ws(token.front())) token.remove_prefix(1);
    if (token.empty()) return std::nullopt;
    auto decoded = base64_decode(token);
    if (!decoded) return std::nullopt;
    const auto colon = decoded->find(':');
    if (colon == std::string::npos) return std::nullopt;
    if (std::any_of(decoded->begin(), decoded->end(), [](char c) { return is_ctl(static_cast<unsigned char>(c)); }))
        return std::nullopt;
    return basic_credentials{decoded->substr(0, colon), decoded->substr(colon + 1)};
}

}  // namespace halfpipe::forward
