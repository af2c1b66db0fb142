// HTTP CONNECT head parsing, responses and Basic proxy credentials (server/forward/connect_request).
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "server/forward/connect_request.hpp"

namespace halfpipe::forward {
namespace {

using status = connect_parse_result::status;

const std::string simple_head = "CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n";

// Feeds `text` in one piece.
connect_parse_result feed_all(connect_head_parser& p, std::string_view text) { return p.feed(text); }

// Feeds `text` one byte at a time until the parser stops asking for more; returns that result.
// Every result before it must be need_more with consumed == 1.
connect_parse_result feed_bytewise(connect_head_parser& p, std::string_view text) {
    connect_parse_result r;
    for (std::size_t i = 0; i < text.size(); ++i) {
        r = p.feed(text.substr(i, 1));
        if (r.state != status::need_more) return r;
        EXPECT_EQ(r.consumed, 1u);
    }
    return r;
}

// An error must come out the same whether the head arrives whole or byte by byte.
void expect_error(std::string_view text, int http_status, std::string_view detail_part = {},
                  std::size_t limit = connect_head_parser::default_header_limit) {
    SCOPED_TRACE(std::string(text.substr(0, 120)));
    for (bool bytewise : {false, true}) {
        connect_head_parser p(limit);
        const auto r = bytewise ? feed_bytewise(p, text) : feed_all(p, text);
        EXPECT_EQ(r.state, status::error) << (bytewise ? "bytewise" : "whole");
        EXPECT_EQ(r.http_status, http_status) << (bytewise ? "bytewise: " : "whole: ") << r.detail;
        EXPECT_EQ(r.consumed, 0u);
        if (!detail_part.empty()) {
            EXPECT_NE(r.detail.find(detail_part), std::string::npos) << "detail: " << r.detail;
        }
        EXPECT_FALSE(p.done());
    }
}

connect_head parse_ok(std::string_view text) {
    connect_head_parser p;
    const auto r = p.feed(text);
    EXPECT_EQ(r.state, status::done) << r.detail;
    EXPECT_EQ(r.consumed, text.size());
    return p.head();
}

// ---- successful heads ----------------------------------------------------------------------

TEST(connect_head_parser, host_name_target) {
    connect_head_parser p;
    const auto r = p.feed(simple_head);
    ASSERT_EQ(r.state, status::done) << r.detail;
    EXPECT_EQ(r.consumed, simple_head.size());
    EXPECT_EQ(r.http_status, 0);
    EXPECT_TRUE(p.done());
    const auto& h = p.head();
    EXPECT_EQ(h.target.host, "example.org");
    EXPECT_EQ(h.target.kind, host_kind::name);
    EXPECT_EQ(h.target.port, 443);
    EXPECT_EQ(h.version, 11u);
    EXPECT_FALSE(h.proxy_authorization.has_value());
    EXPECT_EQ(h.size, simple_head.size());
    EXPECT_EQ(h.target.authority(), "example.org:443");
}

TEST(connect_head_parser, ipv4_literal_and_http_1_0) {
    const auto h = parse_ok("CONNECT 10.1.2.3:8080 HTTP/1.0\r\n\r\n");
    EXPECT_EQ(h.target.host, "10.1.2.3");
    EXPECT_EQ(h.target.kind, host_kind::ipv4);
    EXPECT_EQ(h.target.address, ip_address::v4(10, 1, 2, 3));
    EXPECT_EQ(h.target.port, 8080);
    EXPECT_EQ(h.version, 10u);
}

TEST(connect_head_parser, bracketed_ipv6_literal) {
    const auto h = parse_ok("CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n");
    EXPECT_EQ(h.target.host, "2001:db8::1");
    EXPECT_EQ(h.target.kind, host_kind::ipv6);
    EXPECT_EQ(h.target.address.to_string(), "2001:db8::1");
    EXPECT_EQ(h.target.port, 443);
    EXPECT_EQ(h.target.authority(), "[2001:db8::1]:443");

    const auto mapped = parse_ok("CONNECT [::ffff:127.0.0.1]:22 HTTP/1.1\r\n\r\n");
    EXPECT_EQ(mapped.target.kind, host_kind::ipv6);
    EXPECT_TRUE(mapped.target.address.is_v4_mapped());
}

TEST(connect_head_parser, port_edges) {
    EXPECT_EQ(parse_ok("CONNECT a.example:1 HTTP/1.1\r\n\r\n").target.port, 1);
    EXPECT_EQ(parse_ok("CONNECT a.example:65535 HTTP/1.1\r\n\r\n").target.port, 65535);
    EXPECT_EQ(parse_ok("CONNECT a.example:00443 HTTP/1.1\r\n\r\n").target.port, 443);
}

TEST(connect_head_parser, host_name_forms) {
    EXPECT_EQ(parse_ok("CONNECT localhost:80 HTTP/1.1\r\n\r\n").target.host, "localhost");
    EXPECT_EQ(parse_ok("CONNECT Example.ORG.:443 HTTP/1.1\r\n\r\n").target.host, "Example.ORG.");
    EXPECT_EQ(parse_ok("CONNECT _svc.a-b.example:443 HTTP/1.1\r\n\r\n").target.host, "_svc.a-b.example");
}

TEST(connect_head_parser, proxy_authorization_is_kept_raw) {
    const auto h = parse_ok(
        "CONNECT example.org:443 HTTP/1.1\r\nHost: example.org\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n"
        "User-Agent: test\r\n\r\n");
    ASSERT_TRUE(h.proxy_authorization.has_value());
    EXPECT_EQ(*h.proxy_authorization, "Basic dXNlcjpwYXNz");
    auto creds = decode_basic_credentials(*h.proxy_authorization);
    ASSERT_TRUE(creds);
    EXPECT_EQ(*creds, (basic_credentials{"user", "pass"}));
}

TEST(connect_head_parser, proxy_authorization_name_is_case_insensitive) {
    const auto h = parse_ok("CONNECT example.org:443 HTTP/1.1\r\nproxy-authorization:   Basic Zm9vOmJhcg==  \r\n\r\n");
    ASSERT_TRUE(h.proxy_authorization.has_value());
    EXPECT_EQ(*h.proxy_authorization, "Basic Zm9vOmJhcg==");
}

TEST(connect_head_parser, content_length_zero_is_accepted) {
    const auto h = parse_ok("CONNECT example.org:443 HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(h.target.port, 443);
}

// ---- incremental feeding and pipelined bytes ---------------------------------------------

TEST(connect_head_parser, byte_at_a_time) {
    connect_head_parser p;
    for (std::size_t i = 0; i + 1 < simple_head.size(); ++i) {
        const auto r = p.feed(simple_head.substr(i, 1));
        ASSERT_EQ(r.state, status::need_more) << "byte " << i << ": " << r.detail;
        EXPECT_EQ(r.consumed, 1u);
    }
    const auto r = p.feed(simple_head.substr(simple_head.size() - 1));
    ASSERT_EQ(r.state, status::done) << r.detail;
    EXPECT_EQ(r.consumed, 1u);
    EXPECT_EQ(p.head().target.host, "example.org");
    EXPECT_EQ(p.head().size, simple_head.size());
}

TEST(connect_head_parser, empty_feeds_are_harmless) {
    connect_head_parser p;
    EXPECT_EQ(p.feed({}).state, status::need_more);
    EXPECT_EQ(p.feed("CONNECT ex").state, status::need_more);
    EXPECT_EQ(p.feed({}).state, status::need_more);
    const auto r = p.feed("ample.org:443 HTTP/1.1\r\n\r\n");
    EXPECT_EQ(r.state, status::done);
    EXPECT_EQ(p.head().target.host, "example.org");
}

TEST(connect_head_parser, pipelined_bytes_after_the_head_are_reported) {
    const std::string payload("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\nGET / HTTP/1.1\r\n\r\n", 31);
    connect_head_parser p;
    const std::string all = simple_head + payload;
    const auto r = p.feed(all);
    ASSERT_EQ(r.state, status::done);
    EXPECT_EQ(r.consumed, simple_head.size());
    EXPECT_EQ(std::string_view(all).substr(r.consumed), payload);
    EXPECT_EQ(p.head().size, simple_head.size());
}

TEST(connect_head_parser, every_split_point_gives_the_same_head_and_payload) {
    const std::string head =
        "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\nProxy-Authorization: Basic YTpi\r\n\r\n";
    const std::string payload = "hello upstream\r\n\r\n";
    const std::string all = head + payload;
    for (std::size_t cut = 0; cut <= all.size(); ++cut) {
        SCOPED_TRACE(cut);
        connect_head_parser p;
        const std::string_view first = std::string_view(all).substr(0, cut);
        const std::string_view second = std::string_view(all).substr(cut);
        auto r = p.feed(first);
        std::string pipelined;
        if (r.state == status::done) {
            EXPECT_GE(cut, head.size());
            EXPECT_EQ(r.consumed, head.size());
            pipelined = std::string(first.substr(r.consumed)) + std::string(second);
        } else {
            ASSERT_EQ(r.state, status::need_more);
            EXPECT_LT(cut, head.size());
            EXPECT_EQ(r.consumed, first.size());
            r = p.feed(second);
            ASSERT_EQ(r.state, status::done) << r.detail;
            EXPECT_EQ(r.consumed, head.size() - cut);
            pipelined = std::string(second.substr(r.consumed));
        }
        EXPECT_EQ(pipelined, payload);
        EXPECT_EQ(p.head().target.host, "::1");
        EXPECT_EQ(p.head().target.port, 8443);
        EXPECT_EQ(p.head().proxy_authorization.value_or(""), "Basic YTpi");
        EXPECT_EQ(p.head().size, head.size());
    }
}

TEST(connect_head_parser, pipelined_bytes_bytewise_then_bulk) {
    // Head dribbled in, then the last byte of the head arrives together with payload.
    const std::string payload = "PAYLOAD";
    connect_head_parser p;
    for (std::size_t i = 0; i + 1 < simple_head.size(); ++i) ASSERT_EQ(p.feed(simple_head.substr(i, 1)).state, status::need_more);
    const std::string last = simple_head.substr(simple_head.size() - 1) + payload;
    const auto r = p.feed(last);
    ASSERT_EQ(r.state, status::done);
    EXPECT_EQ(r.consumed, 1u);
    EXPECT_EQ(last.substr(r.consumed), payload);
}

TEST(connect_head_parser, feeds_after_done_consume_nothing) {
    connect_head_parser p;
    ASSERT_EQ(p.feed(simple_head).state, status::done);
    const auto r = p.feed("more bytes");
    EXPECT_EQ(r.state, status::done);
    EXPECT_EQ(r.consumed, 0u);
    EXPECT_EQ(p.head().target.host, "example.org");
}

TEST(connect_head_parser, feeds_after_error_repeat_the_error) {
    connect_head_parser p;
    const auto first = p.feed("GET / HTTP/1.1\r\n\r\n");
    ASSERT_EQ(first.state, status::error);
    const auto again = p.feed(simple_head);
    EXPECT_EQ(again.state, status::error);
    EXPECT_EQ(again.http_status, 405);
    EXPECT_EQ(again.detail, first.detail);
    EXPECT_EQ(again.consumed, 0u);
}

TEST(connect_head_parser, is_movable) {
    connect_head_parser a;
    ASSERT_EQ(a.feed("CONNECT example.org:").state, status::need_more);
    connect_head_parser b = std::move(a);
    ASSERT_EQ(b.feed("443 HTTP/1.1\r\n\r\n").state, status::done);
    EXPECT_EQ(b.head().target.port, 443);
}

// ---- 405 -------------------------------------------------------------------------------------

TEST(connect_head_parser, other_methods_are_405) {
    expect_error("GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", 405, "\"GET\"");
    expect_error("GET http://example.org/ HTTP/1.1\r\n\r\n", 405);
    expect_error("POST example.org:443 HTTP/1.1\r\n\r\n", 405);
    expect_error("connect example.org:443 HTTP/1.1\r\n\r\n", 405);  // methods are case-sensitive
    expect_error("CONNECTX example.org:443 HTTP/1.1\r\n\r\n", 405);
    expect_error("OPTIONS * HTTP/1.1\r\n\r\n", 405);
}

TEST(connect_head_parser, wrong_method_is_rejected_before_the_end_of_the_request_line) {
    connect_head_parser p;
    const auto r = p.feed("GET / HTTP/1.1\r");
    EXPECT_EQ(r.state, status::error);
    EXPECT_EQ(r.http_status, 405);
}

TEST(connect_head_parser, wrong_method_is_rejected_as_soon_as_the_method_is_in) {
    connect_head_parser p;
    for (char c : std::string("GET")) EXPECT_EQ(p.feed(std::string(1, c)).state, status::need_more);
    const auto r = p.feed(" ");
    EXPECT_EQ(r.state, status::error);
    EXPECT_EQ(r.http_status, 405);
    // A prefix of CONNECT is not judged early.
    connect_head_parser q;
    EXPECT_EQ(q.feed("CONN").state, status::need_more);
    EXPECT_EQ(q.feed("ECT").state, status::need_more);
    EXPECT_EQ(q.feed("ED ").state, status::error);
}

TEST(connect_head_parser, method_is_judged_before_malformed_fields) {
    expect_error("GET / HTTP/1.1\r\nno colon here\r\n\r\n", 405);
}

// ---- 400: target --------------------------------------------------------------------------

TEST(connect_head_parser, bad_authority_is_400) {
    expect_error("CONNECT example.org HTTP/1.1\r\n\r\n", 400, "missing port");
    expect_error("CONNECT example.org: HTTP/1.1\r\n\r\n", 400, "missing port");
    expect_error("CONNECT example.org:0 HTTP/1.1\r\n\r\n", 400, "1..65535");
    expect_error("CONNECT example.org:65536 HTTP/1.1\r\n\r\n", 400, "1..65535");
    expect_error("CONNECT example.org:99999 HTTP/1.1\r\n\r\n", 400, "1..65535");
    expect_error("CONNECT example.org:4430000 HTTP/1.1\r\n\r\n", 400, "1..65535");
    expect_error("CONNECT example.org:-1 HTTP/1.1\r\n\r\n", 400, "1..65535");
    expect_error("CONNECT example.org:https HTTP/1.1\r\n\r\n", 400, "1..65535");
    expect_error("CONNECT :443 HTTP/1.1\r\n\r\n", 400, "empty host");
    expect_error("CONNECT []:443 HTTP/1.1\r\n\r\n", 400, "empty host");
    expect_error("CONNECT [::1] HTTP/1.1\r\n\r\n", 400, "missing port");
    expect_error("CONNECT [::1]443 HTTP/1.1\r\n\r\n", 400, "missing port");
    expect_error("CONNECT [::1:443 HTTP/1.1\r\n\r\n", 400, "unterminated");
    expect_error("CONNECT ::1:443 HTTP/1.1\r\n\r\n", 400, "without brackets");
    expect_error("CONNECT [1.2.3.4]:443 HTTP/1.1\r\n\r\n", 400, "invalid IPv6");
    expect_error("CONNECT [example.org]:443 HTTP/1.1\r\n\r\n", 400, "invalid IPv6");
    expect_error("CONNECT [fe80::1%25eth0]:443 HTTP/1.1\r\n\r\n", 400, "invalid IPv6");
    expect_error("CONNECT user@example.org:443 HTTP/1.1\r\n\r\n", 400, "invalid host name");
    expect_error("CONNECT http://example.org:443 HTTP/1.1\r\n\r\n", 400);
    expect_error("CONNECT example.org:443/path HTTP/1.1\r\n\r\n", 400);
    expect_error("CONNECT /example.org:443 HTTP/1.1\r\n\r\n", 400);
    expect_error("CONNECT exa..mple:443 HTTP/1.1\r\n\r\n", 400, "invalid host name");
    expect_error("CONNECT 127.1:80 HTTP/1.1\r\n\r\n", 400, "invalid host name");      // inet_aton shorthand
    expect_error("CONNECT 0x7f000001:80 HTTP/1.1\r\n\r\n", 400, "invalid host name");  // ditto, hex
    expect_error("CONNECT 256.0.0.1:80 HTTP/1.1\r\n\r\n", 400, "invalid host name");
    expect_error("CONNECT 010.0.0.1:80 HTTP/1.1\r\n\r\n", 400, "invalid host name");   // octal-looking
}

TEST(connect_head_parser, bad_target_is_rejected_before_the_fields) {
    connect_head_parser p;
    const auto r = p.feed("CONNECT example.org HTTP/1.1\r\n");
    EXPECT_EQ(r.state, status::error);
    EXPECT_EQ(r.http_status, 400);
}

// ---- 400: malformed -------------------------------------------------------------------------

TEST(connect_head_parser, malformed_heads_are_400) {
    expect_error(std::string("\x16\x03\x01\x00\xa5\x01\x00\x00", 8), 400, "malformed");  // a TLS ClientHello
    expect_error(std::string("\x05\x01\x00", 3), 400);                                    // a SOCKS5 greeting
    expect_error(" CONNECT example.org:443 HTTP/1.1\r\n\r\n", 400);
    expect_error("CONNECT  example.org:443 HTTP/1.1\r\n\r\n", 400);
    expect_error("CONNECT example.org:443\r\n\r\n", 400);  // HTTP/0.9 style, no version
    expect_error("CONNECT example.org:443 HTTP/1.1 \r\n\r\n", 400);
    expect_error("CONNECT example.org:443 HTTP/1.1x\r\n\r\n", 400);
    expect_error("CONNECT example.org:443 http/1.1\r\n\r\n", 400);
    expect_error("CONNECT example.org:443 HTTP/1.1\r\nno colon here\r\n\r\n", 400);
    expect_error("CONNECT example.org:443 HTTP/1.1\r\nBad Name: x\r\n\r\n", 400);
    expect_error("CONNECT example.org:443 HTTP/1.1\r\nX: a\rb\r\n\r\n", 400);
    expect_error("CONNECT example.org:443 HTTP/1.1\r\nX: y\r\r\n\r\n", 400);
}

TEST(connect_head_parser, body_framing_fields_are_400) {
    expect_error("CONNECT example.org:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 400, "Content-Length");
    expect_error("CONNECT example.org:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "Transfer-Encoding");
    expect_error("CONNECT example.org:443 HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400);
    expect_error("CONNECT example.org:443 HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400);
}

TEST(connect_head_parser, duplicate_proxy_authorization_is_400) {
    expect_error(
        "CONNECT example.org:443 HTTP/1.1\r\nProxy-Authorization: Basic YTpi\r\nProxy-Authorization: Basic Yzpk\r\n\r\n",
        400, "Proxy-Authorization");
}

// ---- 505 -------------------------------------------------------------------------------------

TEST(connect_head_parser, unsupported_versions_are_505) {
    expect_error("CONNECT example.org:443 HTTP/2.0\r\n\r\n", 505, "HTTP/1.0 and HTTP/1.1");
    expect_error("CONNECT example.org:443 HTTP/0.9\r\n\r\n", 505);
    expect_error("CONNECT example.org:443 HTTP/1.2\r\n\r\n", 505);
    expect_error("CONNECT example.org:443 HTTP/3.0\r\n\r\n", 505);
}

// ---- 431 -------------------------------------------------------------------------------------

std::string head_of_size(std::size_t size) {
    // "CONNECT example.org:443 HTTP/1.1\r\nX-Pad: <pad>\r\n\r\n"
    const std::string start = "CONNECT example.org:443 HTTP/1.1\r\nX-Pad: ";
    const std::string end = "\r\n\r\n";
    EXPECT_GE(size, start.size() + end.size() + 1);
    return start + std::string(size - start.size() - end.size(), 'p') + end;
}

TEST(connect_head_parser, head_of_exactly_the_limit_is_accepted) {
    for (std::size_t limit : {std::size_t(128), connect_head_parser::default_header_limit}) {
        SCOPED_TRACE(limit);
        const auto head = head_of_size(limit);
        for (bool bytewise : {false, true}) {
            connect_head_parser p(limit);
            const auto r = bytewise ? feed_bytewise(p, head) : p.feed(head + "payload");
            EXPECT_EQ(r.state, status::done) << r.detail;
            EXPECT_EQ(p.head().size, limit);
        }
    }
}

TEST(connect_head_parser, head_one_byte_over_the_limit_is_431) {
    expect_error(head_of_size(8193), 431, "exceeds 8192 bytes");
    expect_error(head_of_size(129), 431, "exceeds 128 bytes", 128);
}

TEST(connect_head_parser, oversized_request_line_is_431) {
    expect_error("CONNECT " + std::string(9000, 'a') + ".example:443 HTTP/1.1\r\n\r\n", 431);
}

TEST(connect_head_parser, endless_fields_are_cut_off_at_the_limit) {
    // No empty line ever comes: the error must come as soon as `limit` bytes are in.
    connect_head_parser p(256);
    std::string stream = "CONNECT example.org:443 HTTP/1.1\r\n";
    while (stream.size() < 1000) stream += "X-Junk: 0123456789\r\n";
    std::size_t fed = 0;
    connect_parse_result r;
    for (; fed < stream.size(); ++fed) {
        r = p.feed(stream.substr(fed, 1));
        if (r.state != status::need_more) break;
    }
    EXPECT_EQ(r.state, status::error);
    EXPECT_EQ(r.http_status, 431);
    EXPECT_EQ(fed + 1, 256u);  // the 256th byte completes a too-large head-so-far
}

TEST(connect_head_parser, large_chunks_past_the_limit_are_431_at_once) {
    connect_head_parser p(1024);
    const auto r = p.feed("CONNECT example.org:443 HTTP/1.1\r\nX: " + std::string(5000, 'x'));
    EXPECT_EQ(r.state, status::error);
    EXPECT_EQ(r.http_status, 431);
}

TEST(connect_head_parser, limit_counts_request_line_and_fields_together) {
    // Beast alone limits the request line and the field block separately; ours is the total.
    const std::string line = "CONNECT " + std::string(40, 'a') + "." + std::string(39, 'a') + ".example:443 HTTP/1.1\r\n";
    const std::string fields = "X: " + std::string(80, 'b') + "\r\n\r\n";
    ASSERT_LT(line.size(), 128u);
    ASSERT_LT(fields.size(), 128u);
    expect_error(line + fields, 431, {}, 128);
}

TEST(connect_head_parser, default_limit_is_8_kib) {
    connect_head_parser p;
    EXPECT_EQ(p.header_limit(), 8192u);
    EXPECT_EQ(connect_head_parser(100).header_limit(), 100u);
}

// ---- responses -----------------------------------------------------------------------------

TEST(connect_response, established) {
    EXPECT_EQ(connection_established(), "HTTP/1.1 200 Connection established\r\n\r\n");
    EXPECT_EQ(connect_response(200), "HTTP/1.1 200 Connection established\r\n\r\n");
}

TEST(connect_response, proxy_auth_required) {
    EXPECT_EQ(proxy_auth_required(),
              "HTTP/1.1 407 Proxy Authentication Required\r\n"
              "Proxy-Authenticate: Basic realm=\"halfpipe\"\r\n"
              "Content-Length: 0\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(error_response(407), proxy_auth_required());
    EXPECT_NE(proxy_auth_required("a \"q\" \\ b").find("realm=\"a \\\"q\\\" \\\\ b\""), std::string::npos);
}

TEST(connect_response, errors_close_the_connection) {
    EXPECT_EQ(error_response(403), "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(error_response(502), "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(error_response(504), "HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(error_response(400), "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(error_response(431),
              "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(error_response(505),
              "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(error_response(405),
              "HTTP/1.1 405 Method Not Allowed\r\nAllow: CONNECT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

TEST(connect_response, custom_reason_and_headers) {
    EXPECT_EQ(connect_response(200, "OK", {{"Proxy-Agent", "halfpipe"}}), "HTTP/1.1 200 OK\r\nProxy-Agent: halfpipe\r\n\r\n");
    const http_header extra[] = {{"Retry-After", "5"}, {"X-Why", "busy"}};
    EXPECT_EQ(connect_response(503, {}, extra),
              "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nX-Why: busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(connect_response(599), "HTTP/1.1 599 Unknown\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

TEST(connect_response, refuses_to_split_responses) {
    EXPECT_THROW(connect_response(99), std::invalid_argument);
    EXPECT_THROW(connect_response(600), std::invalid_argument);
    EXPECT_THROW(connect_response(403, "Forbidden\r\nSet-Cookie: x"), std::invalid_argument);
    EXPECT_THROW(connect_response(403, {}, {{"X", "a\r\nb"}}), std::invalid_argument);
    EXPECT_THROW(connect_response(403, {}, {{"X", "a\nb"}}), std::invalid_argument);
    EXPECT_THROW(connect_response(403, {}, {{"X", std::string_view("a\0b", 3)}}), std::invalid_argument);
    EXPECT_THROW(connect_response(403, {}, {{"Bad Name", "v"}}), std::invalid_argument);
    EXPECT_THROW(connect_response(403, {}, {{"", "v"}}), std::invalid_argument);
    EXPECT_THROW(connect_response(403, {}, {{"X:", "v"}}), std::invalid_argument);
}

TEST(connect_response, status_for_failures) {
    EXPECT_EQ(http_status_for(connect_failure::denied), 403);
    EXPECT_EQ(http_status_for(connect_failure::timed_out), 504);
    for (auto f : {connect_failure::resolve_failed, connect_failure::refused, connect_failure::network_unreachable,
                   connect_failure::host_unreachable, connect_failure::address_unavailable, connect_failure::other})
        EXPECT_EQ(http_status_for(f), 502) << to_string(f);
}

// ---- Basic credentials ---------------------------------------------------------------------

TEST(base64_decode, rfc4648_vectors) {
    EXPECT_EQ(base64_decode(""), "");
    EXPECT_EQ(base64_decode("Zg=="), "f");
    EXPECT_EQ(base64_decode("Zm8="), "fo");
    EXPECT_EQ(base64_decode("Zm9v"), "foo");
    EXPECT_EQ(base64_decode("Zm9vYg=="), "foob");
    EXPECT_EQ(base64_decode("Zm9vYmE="), "fooba");
    EXPECT_EQ(base64_decode("Zm9vYmFy"), "foobar");
    EXPECT_EQ(base64_decode("+/+/"), std::string("\xfb\xff\xbf", 3));
}

TEST(base64_decode, padding_is_optional_but_checked) {
    EXPECT_EQ(base64_decode("Zg"), "f");
    EXPECT_EQ(base64_decode("Zm8"), "fo");
    EXPECT_FALSE(base64_decode("Zg="));    // padding present but length not a multiple of 4
    EXPECT_FALSE(base64_decode("Zg==="));  // three pad characters
    EXPECT_FALSE(base64_decode("Z"));      // one leftover character carries no byte
    EXPECT_FALSE(base64_decode("Zm9v\n"));
    EXPECT_FALSE(base64_decode("Zm 9v"));
    EXPECT_FALSE(base64_decode("Zm9v-_"));  // URL-safe alphabet is not Basic's
    EXPECT_FALSE(base64_decode("Z=g="));
    EXPECT_FALSE(base64_decode("===="));
}

TEST(decode_basic_credentials, ok) {
    EXPECT_EQ(decode_basic_credentials("Basic dXNlcjpwYXNz"), (basic_credentials{"user", "pass"}));
    EXPECT_EQ(decode_basic_credentials("basic dXNlcjpwYXNz"), (basic_credentials{"user", "pass"}));
    EXPECT_EQ(decode_basic_credentials("BASIC   dXNlcjpwYXNz  "), (basic_credentials{"user", "pass"}));
    // "Aladdin:open sesame" from RFC 7617
    EXPECT_EQ(decode_basic_credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="), (basic_credentials{"Aladdin", "open sesame"}));
    // Password may hold colons; only the first one splits.
    EXPECT_EQ(decode_basic_credentials("Basic dTpwOnc6eA=="), (basic_credentials{"u", "p:w:x"}));
    EXPECT_EQ(decode_basic_credentials("Basic dXNlcjo="), (basic_credentials{"user", ""}));
    EXPECT_EQ(decode_basic_credentials("Basic OnB3"), (basic_credentials{"", "pw"}));
    // UTF-8 is fine.
    EXPECT_EQ(decode_basic_credentials("Basic w6TDtsO8OnB3"), (basic_credentials{"\xc3\xa4\xc3\xb6\xc3\xbc", "pw"}));
}

TEST(decode_basic_credentials, rejects) {
    EXPECT_FALSE(decode_basic_credentials(""));
    EXPECT_FALSE(decode_basic_credentials("Basic"));
    EXPECT_FALSE(decode_basic_credentials("Basic "));
    EXPECT_FALSE(decode_basic_credentials("Basicd XNlcjpwYXNz"));
    EXPECT_FALSE(decode_basic_credentials("Bearer dXNlcjpwYXNz"));
    EXPECT_FALSE(decode_basic_credentials("Digest username=\"u\""));
    EXPECT_FALSE(decode_basic_credentials("Basic dXNlcnBhc3M="));        // "userpass": no colon
    EXPECT_FALSE(decode_basic_credentials("Basic dXNlcjpwYXNz!"));       // not base64
    EXPECT_FALSE(decode_basic_credentials("Basic dXNl cjpwYXNz"));       // space inside the token
    EXPECT_FALSE(decode_basic_credentials("Basic dTpwCg=="));            // "u:p\n": control character
    EXPECT_FALSE(decode_basic_credentials("Basic dQA6cA=="));            // "u\0:p"
}

}  // namespace
}  // namespace halfpipe::forward
