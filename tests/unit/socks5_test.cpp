// SOCKS5 server state machine, RFC 1928 + RFC 1929 (server/forward/socks5).
#include <gtest/gtest.h>

#include <cerrno>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "server/forward/socks5.hpp"

namespace halfpipe::forward {
namespace {

using status = socks5_result::status;

std::string b(std::initializer_list<int> bytes) {
    std::string out;
    for (int v : bytes) out += char(v);
    return out;
}

std::string hex(std::string_view s) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
        if (!out.empty()) out += ' ';
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

#define EXPECT_BYTES(actual, expected) EXPECT_EQ(hex(actual), hex(expected))

const socks5_options no_auth{socks5_auth::none};
const socks5_options user_pass{socks5_auth::username_password};

std::string greeting(std::initializer_list<int> methods) {
    std::string out = b({5, int(methods.size())});
    for (int m : methods) out += char(m);
    return out;
}

std::string auth_request(std::string_view user, std::string_view pass) {
    std::string out = b({1, int(user.size())});
    out += user;
    out += char(pass.size());
    out += pass;
    return out;
}

std::string request_ipv4(std::array<int, 4> a, std::uint16_t port, int cmd = 1) {
    return b({5, cmd, 0, 1, a[0], a[1], a[2], a[3], port >> 8, port & 0xff});
}

std::string request_domain(std::string_view name, std::uint16_t port, int cmd = 1) {
    std::string out = b({5, cmd, 0, 3, int(name.size())});
    out += name;
    out += b({port >> 8, port & 0xff});
    return out;
}

std::string request_ipv6(const std::array<std::uint8_t, 16>& a, std::uint16_t port) {
    std::string out = b({5, 1, 0, 4});
    out.append(reinterpret_cast<const char*>(a.data()), 16);
    out += b({port >> 8, port & 0xff});
    return out;
}

std::string failure_reply(int code) { return b({5, code, 0, 1, 0, 0, 0, 0, 0, 0}); }

// What the client sees and what the relay learns over a whole exchange, however it is split.
struct transcript {
    std::string replies;
    std::vector<status> states;  // every non-need_more state, in order
    std::string username, password, error;
    std::string pipelined;
    std::optional<socks5_request> request;
};

// Feeds `input` in the given piece sizes (the last piece takes the rest); answers authenticate
// with `accept`.
transcript run(socks5_options options, std::string_view input, const std::vector<std::size_t>& pieces, bool accept = true) {
    socks5_session s(options);
    transcript t;
    auto handle = [&](socks5_result r) {
        while (true) {
            t.replies += r.reply;
            if (r.state == status::need_more) return;
            t.states.push_back(r.state);
            if (r.state == status::authenticate) {
                t.username = r.username;
                t.password = r.password;
                r = s.auth_verdict(accept);
                continue;
            }
            if (r.state == status::failed) t.error = r.error;
            if (r.state == status::request) t.request = s.request();
            return;
        }
    };
    std::size_t pos = 0;
    for (std::size_t i = 0; pos < input.size() && s.current_phase() != socks5_session::phase::failed; ++i) {
        const std::size_t n = i < pieces.size() ? pieces[i] : input.size() - pos;
        handle(s.feed(input.substr(pos, n)));
        pos += n;
    }
    t.pipelined = std::string(s.pipelined());
    return t;
}

transcript run_whole(socks5_options options, std::string_view input, bool accept = true) {
    return run(options, input, {input.size()}, accept);
}

transcript run_bytewise(socks5_options options, std::string_view input, bool accept = true) {
    return run(options, input, std::vector<std::size_t>(input.size(), 1), accept);
}

void expect_same(const transcript& a, const transcript& b) {
    EXPECT_BYTES(a.replies, b.replies);
    EXPECT_EQ(a.states, b.states);
    EXPECT_EQ(a.username, b.username);
    EXPECT_EQ(a.password, b.password);
    EXPECT_EQ(a.error, b.error);
    EXPECT_BYTES(a.pipelined, b.pipelined);
    ASSERT_EQ(a.request.has_value(), b.request.has_value());
    if (a.request) {
        EXPECT_EQ(a.request->target, b.request->target);
        EXPECT_EQ(a.request->address_type, b.request->address_type);
    }
}

// ---- happy paths -----------------------------------------------------------------------------

TEST(socks5_session, no_auth_ipv4_connect) {
    socks5_session s(no_auth);
    auto r = s.feed(greeting({0}));
    EXPECT_EQ(r.state, status::need_more);
    EXPECT_BYTES(r.reply, b({5, 0}));
    EXPECT_EQ(s.current_phase(), socks5_session::phase::request);

    r = s.feed(request_ipv4({127, 0, 0, 1}, 8080));
    ASSERT_EQ(r.state, status::request) << r.error;
    EXPECT_TRUE(r.reply.empty());
    const auto& t = s.request().target;
    EXPECT_EQ(t.kind, host_kind::ipv4);
    EXPECT_EQ(t.host, "127.0.0.1");
    EXPECT_EQ(t.address, ip_address::v4(127, 0, 0, 1));
    EXPECT_EQ(t.port, 8080);
    EXPECT_EQ(s.request().address_type, 1);
    EXPECT_TRUE(s.pipelined().empty());
    EXPECT_EQ(s.current_phase(), socks5_session::phase::requested);
}

TEST(socks5_session, picks_no_auth_among_several_methods) {
    socks5_session s(no_auth);
    const auto r = s.feed(greeting({0x02, 0x01, 0x00, 0x80}));
    EXPECT_EQ(r.state, status::need_more);
    EXPECT_BYTES(r.reply, b({5, 0}));
}

TEST(socks5_session, domain_connect) {
    const auto t = run_whole(no_auth, greeting({0}) + request_domain("Example.org", 443));
    ASSERT_TRUE(t.request);
    EXPECT_EQ(t.request->target.kind, host_kind::name);
    EXPECT_EQ(t.request->target.host, "Example.org");
    EXPECT_EQ(t.request->target.port, 443);
    EXPECT_EQ(t.request->address_type, 3);
    EXPECT_BYTES(t.replies, b({5, 0}));
}

TEST(socks5_session, ipv6_connect) {
    std::array<std::uint8_t, 16> a{0x20, 0x01, 0x0d, 0xb8};
    a[15] = 1;
    const auto t = run_whole(no_auth, greeting({0}) + request_ipv6(a, 22));
    ASSERT_TRUE(t.request);
    EXPECT_EQ(t.request->target.kind, host_kind::ipv6);
    EXPECT_EQ(t.request->target.host, "2001:db8::1");
    EXPECT_EQ(t.request->target.address.bytes, a);
    EXPECT_TRUE(t.request->target.address.v6);
    EXPECT_EQ(t.request->target.port, 22);
    EXPECT_EQ(t.request->target.authority(), "[2001:db8::1]:22");
    EXPECT_EQ(t.request->address_type, 4);
}

TEST(socks5_session, domain_holding_an_ip_literal_is_classified_as_the_literal) {
    auto t = run_whole(no_auth, greeting({0}) + request_domain("127.0.0.1", 80));
    ASSERT_TRUE(t.request);
    EXPECT_EQ(t.request->target.kind, host_kind::ipv4);
    EXPECT_EQ(t.request->target.address, ip_address::v4(127, 0, 0, 1));
    EXPECT_EQ(t.request->address_type, 3);
    t = run_whole(no_auth, greeting({0}) + request_domain("::1", 80));
    ASSERT_TRUE(t.request);
    EXPECT_EQ(t.request->target.kind, host_kind::ipv6);
}

TEST(socks5_session, port_edges) {
    for (std::uint16_t port : {0, 1, 255, 256, 65535}) {
        const auto t = run_whole(no_auth, greeting({0}) + request_ipv4({10, 0, 0, 1}, port));
        ASSERT_TRUE(t.request);
        EXPECT_EQ(t.request->target.port, port);
    }
}

TEST(socks5_session, longest_valid_domain) {
    std::string name = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." + std::string(61, 'd');
    ASSERT_EQ(name.size(), 253u);
    const auto t = run_whole(no_auth, greeting({0}) + request_domain(name, 443));
    ASSERT_TRUE(t.request) << t.error;
    EXPECT_EQ(t.request->target.host, name);
}

// ---- username/password ---------------------------------------------------------------------

TEST(socks5_session, username_password_accepted) {
    socks5_session s(user_pass);
    auto r = s.feed(greeting({0x00, 0x02}));
    EXPECT_EQ(r.state, status::need_more);
    EXPECT_BYTES(r.reply, b({5, 2}));
    EXPECT_EQ(s.current_phase(), socks5_session::phase::auth);

    r = s.feed(auth_request("alice", "s3cr:t"));
    ASSERT_EQ(r.state, status::authenticate);
    EXPECT_TRUE(r.reply.empty());
    EXPECT_EQ(r.username, "alice");
    EXPECT_EQ(r.password, "s3cr:t");
    EXPECT_EQ(s.current_phase(), socks5_session::phase::auth_pending);

    r = s.auth_verdict(true);
    EXPECT_EQ(r.state, status::need_more);
    EXPECT_BYTES(r.reply, b({1, 0}));

    r = s.feed(request_domain("example.org", 443));
    ASSERT_EQ(r.state, status::request);
    EXPECT_EQ(s.request().target.host, "example.org");
}

TEST(socks5_session, username_password_rejected) {
    socks5_session s(user_pass);
    s.feed(greeting({2}));
    ASSERT_EQ(s.feed(auth_request("alice", "wrong")).state, status::authenticate);
    const auto r = s.auth_verdict(false);
    EXPECT_EQ(r.state, status::failed);
    EXPECT_BYTES(r.reply, b({1, 1}));
    EXPECT_NE(r.error.find("rejected"), std::string::npos);
    EXPECT_EQ(s.current_phase(), socks5_session::phase::failed);
}

TEST(socks5_session, empty_and_maximal_credentials_are_passed_on) {
    auto t = run_whole(user_pass, greeting({2}) + auth_request("", ""), false);
    EXPECT_EQ(t.states, (std::vector{status::authenticate, status::failed}));
    EXPECT_EQ(t.username, "");
    EXPECT_EQ(t.password, "");
    const std::string user(255, 'u'), pass(255, std::string::value_type(0xff));
    t = run_bytewise(user_pass, greeting({2}) + auth_request(user, pass));
    EXPECT_EQ(t.username, user);
    EXPECT_EQ(t.password, pass);
}

TEST(socks5_session, auth_with_wrong_subnegotiation_version_fails) {
    const auto t = run_whole(user_pass, greeting({2}) + b({5, 1, 'a', 1, 'b'}));
    EXPECT_EQ(t.states, std::vector{status::failed});
    EXPECT_BYTES(t.replies, b({5, 2, 1, 1}));
    EXPECT_NE(t.error.find("version byte 0x05"), std::string::npos) << t.error;
}

TEST(socks5_session, client_without_username_password_gets_0xff_when_auth_is_required) {
    const auto t = run_whole(user_pass, greeting({0}));
    EXPECT_EQ(t.states, std::vector{status::failed});
    EXPECT_BYTES(t.replies, b({5, 0xff}));
    EXPECT_NE(t.error.find("username/password"), std::string::npos);
}

TEST(socks5_session, client_without_no_auth_gets_0xff_when_auth_is_off) {
    const auto t = run_whole(no_auth, greeting({2, 1}));
    EXPECT_EQ(t.states, std::vector{status::failed});
    EXPECT_BYTES(t.replies, b({5, 0xff}));
    EXPECT_NE(t.error.find("no-auth"), std::string::npos);
}

TEST(socks5_session, empty_method_list_gets_0xff) {
    for (auto opts : {no_auth, user_pass}) {
        const auto t = run_whole(opts, b({5, 0}));
        EXPECT_EQ(t.states, std::vector{status::failed});
        EXPECT_BYTES(t.replies, b({5, 0xff}));
    }
}

TEST(socks5_session, bytes_fed_while_a_verdict_is_pending_wait_for_it) {
    socks5_session s(user_pass);
    s.feed(greeting({2}));
    ASSERT_EQ(s.feed(auth_request("u", "p")).state, status::authenticate);
    auto r = s.feed(request_ipv4({10, 0, 0, 1}, 443) + "early payload");
    EXPECT_EQ(r.state, status::need_more);
    EXPECT_TRUE(r.reply.empty());
    EXPECT_TRUE(s.pipelined().empty());
    r = s.auth_verdict(true);
    ASSERT_EQ(r.state, status::request);
    EXPECT_BYTES(r.reply, b({1, 0}));
    EXPECT_EQ(s.pipelined(), "early payload");
}

TEST(socks5_session, auth_verdict_without_pending_auth_throws) {
    socks5_session s(user_pass);
    EXPECT_THROW(s.auth_verdict(true), std::logic_error);
    s.feed(greeting({2}));
    EXPECT_THROW(s.auth_verdict(true), std::logic_error);
    s.feed(auth_request("u", "p"));
    EXPECT_NO_THROW(s.auth_verdict(true));
    EXPECT_THROW(s.auth_verdict(true), std::logic_error);
}

// ---- pipelining and splits -----------------------------------------------------------------

TEST(socks5_session, everything_in_one_segment) {
    const std::string payload = b({0x16, 3, 1, 0, 0}) + "GET / HTTP/1.1\r\n\r\n";
    const std::string input = greeting({0, 2}) + auth_request("bob", "pw") + request_domain("a.example", 443) + payload;
    const auto t = run_whole(user_pass, input);
    EXPECT_EQ(t.states, (std::vector{status::authenticate, status::request}));
    EXPECT_BYTES(t.replies, b({5, 2, 1, 0}));
    EXPECT_EQ(t.username, "bob");
    EXPECT_EQ(t.password, "pw");
    ASSERT_TRUE(t.request);
    EXPECT_EQ(t.request->target.host, "a.example");
    EXPECT_BYTES(t.pipelined, payload);
}

TEST(socks5_session, no_auth_greeting_request_and_payload_in_one_segment) {
    socks5_session s(no_auth);
    const auto r = s.feed(greeting({0}) + request_ipv4({192, 0, 2, 7}, 25) + "EHLO x\r\n");
    ASSERT_EQ(r.state, status::request);
    EXPECT_BYTES(r.reply, b({5, 0}));
    EXPECT_EQ(s.pipelined(), "EHLO x\r\n");
}

TEST(socks5_session, byte_at_a_time_matches_whole) {
    const std::string payload = "payload";
    for (auto opts : {no_auth, user_pass}) {
        for (const std::string& req : {request_ipv4({10, 1, 2, 3}, 443), request_domain("host.example", 80),
                                       request_ipv6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 8443)}) {
            const std::string input = greeting({0, 2}) + (opts.auth == socks5_auth::none ? "" : auth_request("u", "p")) + req + payload;
            const auto whole = run_whole(opts, input);
            ASSERT_TRUE(whole.request);
            EXPECT_EQ(whole.pipelined, payload);
            expect_same(run_bytewise(opts, input), whole);
        }
    }
}

TEST(socks5_session, every_two_piece_split_matches_whole) {
    const std::string input = greeting({1, 2}) + auth_request("user", "pass") + request_domain("x.example", 443) + "data";
    const auto whole = run_whole(user_pass, input);
    for (std::size_t cut = 0; cut <= input.size(); ++cut) {
        SCOPED_TRACE(cut);
        expect_same(run(user_pass, input, {cut}), whole);
    }
}

TEST(socks5_session, every_three_piece_split_matches_whole_for_errors_too) {
    const std::string input = greeting({0}) + request_domain("x.example", 443, 3);  // UDP ASSOCIATE
    const auto whole = run_whole(no_auth, input);
    EXPECT_EQ(whole.states, std::vector{status::failed});
    for (std::size_t i = 0; i <= input.size(); ++i)
        for (std::size_t j = 0; i + j <= input.size(); ++j) expect_same(run(no_auth, input, {i, j}), whole);
}

TEST(socks5_session, bytes_after_the_request_accumulate_as_pipelined) {
    socks5_session s(no_auth);
    ASSERT_EQ(s.feed(greeting({0}) + request_ipv4({10, 0, 0, 1}, 80) + "ab").state, status::request);
    auto r = s.feed("cd");
    EXPECT_EQ(r.state, status::need_more);
    EXPECT_TRUE(r.reply.empty());
    EXPECT_EQ(s.pipelined(), "abcd");
    EXPECT_EQ(s.take_pipelined(), "abcd");
    EXPECT_TRUE(s.pipelined().empty());
    s.feed("e");
    EXPECT_EQ(s.take_pipelined(), "e");
}

TEST(socks5_session, nothing_is_pipelined_before_the_request) {
    socks5_session s(no_auth);
    s.feed(greeting({0}) + b({5, 1, 0}));
    EXPECT_TRUE(s.pipelined().empty());
    EXPECT_TRUE(s.take_pipelined().empty());
}

// ---- request errors ------------------------------------------------------------------------

TEST(socks5_session, bind_and_udp_associate_are_command_not_supported) {
    for (int cmd : {0x02, 0x03, 0x00, 0x04, 0xff}) {
        SCOPED_TRACE(cmd);
        const auto t = run_whole(no_auth, greeting({0}) + request_ipv4({10, 0, 0, 1}, 80, cmd));
        EXPECT_EQ(t.states, std::vector{status::failed});
        EXPECT_BYTES(t.replies, b({5, 0}) + failure_reply(0x07));
        EXPECT_NE(t.error.find("not supported"), std::string::npos);
    }
    EXPECT_NE(run_whole(no_auth, greeting({0}) + request_ipv4({1, 1, 1, 1}, 1, 2)).error.find("BIND"), std::string::npos);
    EXPECT_NE(run_whole(no_auth, greeting({0}) + request_ipv4({1, 1, 1, 1}, 1, 3)).error.find("UDP ASSOCIATE"),
              std::string::npos);
}

TEST(socks5_session, command_is_refused_as_soon_as_the_header_is_in) {
    socks5_session s(no_auth);
    s.feed(greeting({0}));
    EXPECT_EQ(s.feed(b({5, 2, 0})).state, status::need_more);
    const auto r = s.feed(b({1}));  // no address yet
    EXPECT_EQ(r.state, status::failed);
    EXPECT_BYTES(r.reply, failure_reply(0x07));
}

TEST(socks5_session, unknown_address_types_are_refused) {
    for (int atyp : {0x00, 0x02, 0x05, 0xff}) {
        SCOPED_TRACE(atyp);
        const auto t = run_whole(no_auth, greeting({0}) + b({5, 1, 0, atyp, 1, 2, 3, 4, 0, 80}));
        EXPECT_EQ(t.states, std::vector{status::failed});
        EXPECT_BYTES(t.replies, b({5, 0}) + failure_reply(0x08));
        EXPECT_NE(t.error.find("address type"), std::string::npos);
    }
}

TEST(socks5_session, empty_domain_is_a_general_failure) {
    const auto t = run_whole(no_auth, greeting({0}) + b({5, 1, 0, 3, 0, 0, 80}));
    EXPECT_EQ(t.states, std::vector{status::failed});
    EXPECT_BYTES(t.replies, b({5, 0}) + failure_reply(0x01));
}

TEST(socks5_session, unusable_domain_is_host_unreachable) {
    for (const std::string& name : {std::string("exa mple.org"), std::string("evil.com\0.example.org", 21),
                                    std::string("a..b"), std::string("127.1"), std::string(254, 'a'),
                                    std::string("[::1]"), std::string("\xff\xfe")}) {
        SCOPED_TRACE(hex(name));
        const auto t = run_whole(no_auth, greeting({0}) + request_domain(name, 443));
        EXPECT_EQ(t.states, std::vector{status::failed});
        EXPECT_BYTES(t.replies, b({5, 0}) + failure_reply(0x04));
        EXPECT_NE(t.error.find("invalid domain name"), std::string::npos);
    }
}

TEST(socks5_session, request_with_wrong_version_is_a_general_failure) {
    const auto t = run_whole(no_auth, greeting({0}) + b({4, 1, 0, 1, 1, 2, 3, 4, 0, 80}));
    EXPECT_EQ(t.states, std::vector{status::failed});
    EXPECT_BYTES(t.replies, b({5, 0}) + failure_reply(0x01));
}

TEST(socks5_session, reserved_byte_is_tolerated) {
    const auto t = run_whole(no_auth, greeting({0}) + b({5, 1, 0x7f, 1, 1, 2, 3, 4, 0, 80}));
    ASSERT_TRUE(t.request);
    EXPECT_EQ(t.request->target.host, "1.2.3.4");
}

TEST(socks5_session, non_socks5_greetings_fail_silently) {
    for (const std::string& input : {b({4, 1, 0, 80, 127, 0, 0, 1, 0}), std::string("CONNECT example.org:443 HTTP/1.1\r\n"),
                                     b({0x16, 3, 1}), b({0})}) {
        socks5_session s(no_auth);
        const auto r = s.feed(input);
        EXPECT_EQ(r.state, status::failed);
        EXPECT_TRUE(r.reply.empty());
        EXPECT_NE(r.error.find("not a SOCKS5 greeting"), std::string::npos);
    }
}

TEST(socks5_session, version_is_judged_on_the_first_byte) {
    socks5_session s(no_auth);
    EXPECT_EQ(s.feed(b({4})).state, status::failed);
    socks5_session t(no_auth);
    EXPECT_EQ(t.feed(b({5})).state, status::need_more);
}

TEST(socks5_session, feeds_after_failure_repeat_it) {
    socks5_session s(no_auth);
    const auto first = s.feed(greeting({2}));
    ASSERT_EQ(first.state, status::failed);
    const auto again = s.feed(greeting({0}));
    EXPECT_EQ(again.state, status::failed);
    EXPECT_TRUE(again.reply.empty());
    EXPECT_EQ(again.error, first.error);
}

TEST(socks5_session, empty_feeds_are_harmless) {
    socks5_session s(no_auth);
    EXPECT_EQ(s.feed({}).state, status::need_more);
    EXPECT_TRUE(s.feed({}).reply.empty());
    EXPECT_EQ(s.feed(greeting({0})).state, status::need_more);
    EXPECT_EQ(s.feed({}).state, status::need_more);
}

// ---- replies -------------------------------------------------------------------------------

TEST(socks5_reply, every_code_on_the_wire) {
    const std::pair<socks5_reply, int> codes[] = {
        {socks5_reply::succeeded, 0x00},           {socks5_reply::general_failure, 0x01},
        {socks5_reply::not_allowed, 0x02},         {socks5_reply::network_unreachable, 0x03},
        {socks5_reply::host_unreachable, 0x04},    {socks5_reply::connection_refused, 0x05},
        {socks5_reply::ttl_expired, 0x06},         {socks5_reply::command_not_supported, 0x07},
        {socks5_reply::address_type_not_supported, 0x08},
    };
    for (auto [code, value] : codes) {
        EXPECT_BYTES(socks5_reply_bytes(code), failure_reply(value));
        EXPECT_NE(to_string(code), "unknown");
    }
}

TEST(socks5_reply, success_carries_the_bound_address) {
    EXPECT_BYTES(socks5_reply_bytes(socks5_reply::succeeded, ip_address::v4(10, 0, 0, 2), 54321),
                 b({5, 0, 0, 1, 10, 0, 0, 2, 0xd4, 0x31}));
    auto v6 = *ip_address::parse("2001:db8::2");
    EXPECT_BYTES(socks5_reply_bytes(socks5_reply::succeeded, v6, 443),
                 b({5, 0, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0x01, 0xbb}));
}

TEST(socks5_reply, failures_map_to_codes) {
    EXPECT_EQ(socks5_reply_for(connect_failure::denied), socks5_reply::not_allowed);
    EXPECT_EQ(socks5_reply_for(connect_failure::resolve_failed), socks5_reply::host_unreachable);
    EXPECT_EQ(socks5_reply_for(connect_failure::refused), socks5_reply::connection_refused);
    EXPECT_EQ(socks5_reply_for(connect_failure::network_unreachable), socks5_reply::network_unreachable);
    EXPECT_EQ(socks5_reply_for(connect_failure::host_unreachable), socks5_reply::host_unreachable);
    EXPECT_EQ(socks5_reply_for(connect_failure::timed_out), socks5_reply::ttl_expired);
    EXPECT_EQ(socks5_reply_for(connect_failure::address_unavailable), socks5_reply::general_failure);
    EXPECT_EQ(socks5_reply_for(connect_failure::other), socks5_reply::general_failure);
}

TEST(socks5_reply, errno_values_map_to_codes) {
    EXPECT_EQ(socks5_reply_for_errno(ECONNREFUSED), socks5_reply::connection_refused);
    EXPECT_EQ(socks5_reply_for_errno(ENETUNREACH), socks5_reply::network_unreachable);
    EXPECT_EQ(socks5_reply_for_errno(ENETDOWN), socks5_reply::network_unreachable);
    EXPECT_EQ(socks5_reply_for_errno(EHOSTUNREACH), socks5_reply::host_unreachable);
    EXPECT_EQ(socks5_reply_for_errno(EHOSTDOWN), socks5_reply::host_unreachable);
    EXPECT_EQ(socks5_reply_for_errno(ETIMEDOUT), socks5_reply::ttl_expired);
    EXPECT_EQ(socks5_reply_for_errno(EADDRNOTAVAIL), socks5_reply::general_failure);
    EXPECT_EQ(socks5_reply_for_errno(ECONNRESET), socks5_reply::general_failure);
    EXPECT_EQ(socks5_reply_for_errno(0), socks5_reply::general_failure);
}

TEST(connect_failure, classify_errno) {
    EXPECT_EQ(classify_errno(ECONNREFUSED), connect_failure::refused);
    EXPECT_EQ(classify_errno(ENETUNREACH), connect_failure::network_unreachable);
    EXPECT_EQ(classify_errno(EHOSTUNREACH), connect_failure::host_unreachable);
    EXPECT_EQ(classify_errno(ETIMEDOUT), connect_failure::timed_out);
    EXPECT_EQ(classify_errno(EADDRNOTAVAIL), connect_failure::address_unavailable);
    EXPECT_EQ(classify_errno(EPERM), connect_failure::other);
    EXPECT_EQ(to_string(connect_failure::resolve_failed), "resolve_failed");
}

TEST(socks5_session, only_a_refused_method_is_flagged_as_no_acceptable_method) {
    socks5_session refused(user_pass);
    EXPECT_TRUE(refused.feed(greeting({0})).no_acceptable_method);
    socks5_session wrong_version(user_pass);
    const auto r = wrong_version.feed(b({4, 1, 0}));
    EXPECT_EQ(r.state, socks5_result::status::failed);
    EXPECT_FALSE(r.no_acceptable_method);
    socks5_session rejected(user_pass);
    rejected.feed(greeting({2}) + auth_request("u", "p"));
    EXPECT_FALSE(rejected.auth_verdict(false).no_acceptable_method);
}

}  // namespace
}  // namespace halfpipe::forward
