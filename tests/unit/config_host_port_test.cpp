// parse_host_port, is_ip_literal and host_port::to_string.
#include <gtest/gtest.h>

#include "config/config.hpp"

namespace halfpipe::config {
namespace {

std::string address_error(const std::string& text, bool require_ip_literal) {
    try {
        parse_host_port(text, require_ip_literal);
    } catch (const config_error& e) {
        return e.what();
    }
    ADD_FAILURE() << "no config_error for address \"" << text << "\"";
    return {};
}

TEST(parse_host_port, ipv4) {
    EXPECT_EQ(parse_host_port("127.0.0.1:80", true), (host_port{"127.0.0.1", 80}));
    EXPECT_EQ(parse_host_port("0.0.0.0:0", true), (host_port{"0.0.0.0", 0}));
    EXPECT_EQ(parse_host_port("10.1.2.3:65535", false), (host_port{"10.1.2.3", 65535}));
}

TEST(parse_host_port, ipv6_is_kept_without_brackets) {
    EXPECT_EQ(parse_host_port("[::1]:8080", true), (host_port{"::1", 8080}));
    EXPECT_EQ(parse_host_port("[::]:0", true), (host_port{"::", 0}));
    EXPECT_EQ(parse_host_port("[2001:db8::17]:443", false), (host_port{"2001:db8::17", 443}));
    EXPECT_EQ(parse_host_port("[::ffff:192.0.2.1]:80", true), (host_port{"::ffff:192.0.2.1", 80}));
}

TEST(parse_host_port, host_names_only_when_allowed) {
    EXPECT_EQ(parse_host_port("backend.local:9000", false), (host_port{"backend.local", 9000}));
    EXPECT_EQ(parse_host_port("localhost:1", false), (host_port{"localhost", 1}));
    EXPECT_EQ(parse_host_port("svc_a.internal.:443", false), (host_port{"svc_a.internal.", 443}));
    EXPECT_EQ(address_error("localhost:80", true),
              "invalid address \"localhost:80\": \"localhost\" is not an IP address (host names are not allowed here)");
}

TEST(parse_host_port, malformed) {
    struct bad {
        const char* text;
        const char* reason;
    };
    for (const auto& [text, reason] : {
             bad{"", "empty"},
             bad{"127.0.0.1", "missing port"},
             bad{"127.0.0.1:", "missing port"},
             bad{":80", "missing host"},
             bad{"::1:80", "IPv6 addresses must be in brackets"},
             bad{"::1", "IPv6 addresses must be in brackets"},
             bad{"[::1]", "missing port"},
             bad{"[::1]80", "missing port"},
             bad{"[::1]:", "missing port"},
             bad{"[::1:80", "missing ']'"},
             bad{"[127.0.0.1]:80", "is not an IPv6 address"},
             bad{"[example.org]:80", "is not an IPv6 address"},
             bad{"127.0.0.1:65536", "out of range"},
             bad{"127.0.0.1:99999999999999999999", "out of range"},
             bad{"127.0.0.1:-1", "is not a number"},
             bad{"127.0.0.1:+1", "is not a number"},
             bad{"127.0.0.1:8o", "is not a number"},
             bad{"127.0.0.1: 80", "is not a number"},
             bad{"256.0.0.1:80", "not a valid IPv4 address"},
             bad{"1.2.3:80", "not a valid IPv4 address"},
         }) {
        for (const bool require_ip : {true, false}) {
            const auto message = address_error(text, require_ip);
            EXPECT_EQ(message.rfind("invalid address \"" + std::string(text) + "\": ", 0), 0u) << message;
            EXPECT_NE(message.find(reason), std::string::npos) << text << " → " << message;
        }
    }
}

TEST(parse_host_port, invalid_host_names) {
    for (const char* text :
         {"bad host:80", "bad!host:80", "-lead.example:80", "trail-.example:80", "a..b:80", ".a:80", "a/b:80"}) {
        const auto message = address_error(text, false);
        EXPECT_NE(message.find("is not a valid host name"), std::string::npos) << message;
    }
    EXPECT_NE(address_error(std::string(64, 'a') + ".example:80", false).find("not a valid host name"),
              std::string::npos);
    EXPECT_EQ(parse_host_port(std::string(63, 'a') + ".example:80", false).host, std::string(63, 'a') + ".example");
}

TEST(is_ip_literal, accepts_only_plain_addresses) {
    EXPECT_TRUE(is_ip_literal("127.0.0.1"));
    EXPECT_TRUE(is_ip_literal("0.0.0.0"));
    EXPECT_TRUE(is_ip_literal("::1"));
    EXPECT_TRUE(is_ip_literal("::"));
    EXPECT_TRUE(is_ip_literal("2001:db8::1"));
    EXPECT_TRUE(is_ip_literal("::ffff:10.0.0.1"));
    EXPECT_FALSE(is_ip_literal(""));
    EXPECT_FALSE(is_ip_literal("localhost"));
    EXPECT_FALSE(is_ip_literal("[::1]"));
    EXPECT_FALSE(is_ip_literal("127.0.0.1:80"));
    EXPECT_FALSE(is_ip_literal("1.2.3"));  // inet_aton would take it; inet_pton does not
    EXPECT_FALSE(is_ip_literal("256.1.1.1"));
    EXPECT_FALSE(is_ip_literal(" 127.0.0.1"));
}

TEST(host_port, to_string_brackets_ipv6_again) {
    EXPECT_EQ((host_port{"127.0.0.1", 8080}).to_string(), "127.0.0.1:8080");
    EXPECT_EQ((host_port{"::1", 8080}).to_string(), "[::1]:8080");
    EXPECT_EQ((host_port{"backend.local", 9000}).to_string(), "backend.local:9000");
    EXPECT_EQ((host_port{"::", 0}).to_string(), "[::]:0");
}

TEST(host_port, to_string_round_trips) {
    for (const char* text : {"127.0.0.1:1", "[::1]:8080", "[2001:db8::1]:443", "backend.local:9000", "0.0.0.0:0"}) {
        EXPECT_EQ(parse_host_port(text, false).to_string(), text);
    }
}

}  // namespace
}  // namespace halfpipe::config
