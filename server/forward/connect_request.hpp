#pragma once
// HTTP/1.x CONNECT (RFC 9110 §9.3.6) for the forward proxy: an incremental parser of the
// request head, the responses the proxy sends, and Basic proxy credentials (RFC 7617).
// No I/O and no Asio here: the relay reads, feeds bytes in, and writes what it is given.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "server/forward/connect_failure.hpp"
#include "common/destination/target.hpp"

namespace halfpipe::forward {

// The request head once it is complete.
struct connect_head {
    forward::target target;                          // from the authority-form request-target
    unsigned version = 11;                           // 10 or 11
    std::optional<std::string> proxy_authorization;  // the raw field value, if the client sent one
    std::size_t size = 0;                            // bytes of the head, request line to empty line
};

struct connect_parse_result {
    enum class status { need_more, done, error };
    status state = status::need_more;
    // Bytes of *this* feed that belong to the head (all of them unless state == done). On done,
    // bytes.substr(consumed) is what the client pipelined after the head: tunnel payload that
    // must be sent upstream once the tunnel is open. On error, 0.
    std::size_t consumed = 0;
    // On error: the status to answer with (400, 405, 431 or 505; see error_response()) and a
    // one-line reason for the log, e.g. "request head exceeds 8192 bytes".
    int http_status = 0;
    std::string detail;
};

// Feeds a CONNECT request head through Beast's request_parser<empty_body>, in pieces of any
// size. Rejections:
//   405  method other than CONNECT (decided as soon as the method token and its space are in)
//   400  malformed request line or fields; request-target not "host:port" with a host name,
//        an IPv4 literal or a bracketed IPv6 literal and a port 1..65535; Transfer-Encoding or a
//        non-zero Content-Length (CONNECT has no content; refusing them closes a smuggling
//        path); more than one Proxy-Authorization field
//   431  head larger than header_limit bytes (request line + fields + final CRLF)
//   505  a well-formed "HTTP/x.y" other than HTTP/1.0 and HTTP/1.1
// After done or error the parser is finished: further feeds return the same state and consume 0.
class connect_head_parser {
public:
    static constexpr std::size_t default_header_limit = 8 * 1024;

    explicit connect_head_parser(std::size_t header_limit = default_header_limit);
    ~connect_head_parser();
    connect_head_parser(connect_head_parser&&) noexcept;
    connect_head_parser& operator=(connect_head_parser&&) noexcept;

    connect_parse_result feed(std::string_view bytes);

    bool done() const noexcept;
    // Valid once feed() returned done.
    const connect_head& head() const noexcept;
    std::size_t header_limit() const noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

struct http_header {
    std::string_view name;
    std::string_view value;
};

// The standard reason phrase of the statuses this proxy sends; "Unknown" for others.
std::string_view reason_phrase(int status) noexcept;

// "HTTP/1.1 <status> <reason>\r\n" + headers + "\r\n". An empty reason uses reason_phrase().
// Statuses >= 300 get "Content-Length: 0" and "Connection: close" appended (the proxy closes
// after an error response); 2xx gets neither (RFC 9110 forbids Content-Length in a 2xx to
// CONNECT). Throws std::invalid_argument for a status outside 100..599, a header name that
// is not a token, or CR/LF/NUL in the reason or a value (no response splitting).
std::string connect_response(int status, std::string_view reason = {}, std::span<const http_header> extra = {});
std::string connect_response(int status, std::string_view reason, std::initializer_list<http_header> extra);

// "HTTP/1.1 200 Connection established\r\n\r\n"
std::string connection_established();
// 407 with `Proxy-Authenticate: Basic realm="<realm>"` (quotes and backslashes escaped).
std::string proxy_auth_required(std::string_view realm = "halfpipe");
// An error response with the standard reason; 405 carries "Allow: CONNECT", 407 the default
// realm. Use for parser errors (connect_parse_result::http_status), 403, 502, 504, ...
std::string error_response(int status);

// 403 for denied, 504 for timed_out, 502 for every other failure.
int http_status_for(connect_failure failure) noexcept;

struct basic_credentials {
    std::string user;
    std::string password;
    friend bool operator==(const basic_credentials&, const basic_credentials&) = default;
};

// Decodes a Proxy-Authorization value "Basic <base64(user:pass)>" (scheme case-insensitive).
// nullopt for another scheme, bad base64, no colon, or a control character in user or
// password. The password may contain colons; the user may not (RFC 7617).
std::optional<basic_credentials> decode_basic_credentials(std::string_view field_value);

// Standard alphabet; padding optional but, if present, correct. nullopt on any other byte.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace halfpipe::forward
