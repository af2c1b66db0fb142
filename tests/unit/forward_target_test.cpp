// IP literals, host-name validation and targets shared by CONNECT and SOCKS5 (server/forward/target).
#include <gtest/gtest.h>

#include <string>

#include "common/destination/target.hpp"

namespace halfpipe::forward {
namespace {

TEST(ip_address, strict_ipv4) {
    EXPECT_EQ(ip_address::parse("0.0.0.0"), ip_address::v4(0, 0, 0, 0));
    EXPECT_EQ(ip_address::parse("255.255.255.255"), ip_address::v4(255, 255, 255, 255));
    EXPECT_EQ(ip_address::parse("192.0.2.1")->to_string(), "192.0.2.1");
    for (std::string_view bad : {"", "1", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.256", "01.2.3.4", "1.2.3.04", "1..3.4",
                                 ".1.2.3", "1.2.3.", "0x7f.0.0.1", "127.1", "2130706433", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4/8",
                                 "1111.2.3.4", "-1.2.3.4"}) {
        SCOPED_TRACE(bad);
        EXPECT_FALSE(ip_address::parse(bad));
    }
}

TEST(ip_address, strict_ipv6) {
    auto a = ip_address::parse("2001:db8::1");
    ASSERT_TRUE(a);
    EXPECT_TRUE(a->v6);
    EXPECT_EQ(a->bytes[0], 0x20);
    EXPECT_EQ(a->bytes[15], 1);
    EXPECT_EQ(a->to_string(), "2001:db8::1");
    EXPECT_EQ(ip_address::parse("::")->to_string(), "::");
    EXPECT_EQ(ip_address::parse("::FFFF:192.0.2.1")->to_string(), "::ffff:192.0.2.1");
    EXPECT_TRUE(ip_address::parse("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"));
    for (std::string_view bad : {":", ":::", "1::2::3", "[::1]", "fe80::1%eth0", "fe80::1%25eth0", "::1 ", "12345::",
                                 "::ffff:1.2.3", "g::1", "1:2:3:4:5:6:7:8:9"}) {
        SCOPED_TRACE(bad);
        EXPECT_FALSE(ip_address::parse(bad));
    }
}

TEST(ip_address, v4_mapped) {
    const auto m = *ip_address::parse("::ffff:10.1.2.3");
    EXPECT_TRUE(m.is_v4_mapped());
    EXPECT_EQ(m.unmapped(), ip_address::v4(10, 1, 2, 3));
    const auto compat = *ip_address::parse("::10.1.2.3");
    EXPECT_FALSE(compat.is_v4_mapped());
    EXPECT_EQ(compat.unmapped(), compat);
    EXPECT_FALSE(ip_address::v4(10, 1, 2, 3).is_v4_mapped());
    EXPECT_FALSE(ip_address::parse("::fffe:10.1.2.3")->is_v4_mapped());
}

TEST(ip_address, from_bytes_keeps_only_four_bytes_for_ipv4) {
    std::array<std::uint8_t, 16> raw{};
    raw.fill(0xaa);
    const auto v4 = ip_address::from_bytes(raw, false);
    EXPECT_EQ(v4.to_string(), "170.170.170.170");
    EXPECT_EQ(v4, ip_address::v4(0xaa, 0xaa, 0xaa, 0xaa));
    EXPECT_EQ(ip_address::from_bytes(raw, true).bytes, raw);
}

TEST(host_name, valid) {
    for (std::string_view ok : {"localhost", "example.org", "EXAMPLE.ORG", "example.org.", "a", "a-b.c_d.example",
                                "xn--bcher-kva.example", "1.example", "a.1b", "a.b1", "0x7g"}) {
        SCOPED_TRACE(ok);
        EXPECT_TRUE(is_valid_host_name(ok));
    }
    EXPECT_TRUE(is_valid_host_name(std::string(63, 'a') + ".example"));
    std::string longest = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." + std::string(61, 'd');
    EXPECT_TRUE(is_valid_host_name(longest));
    EXPECT_TRUE(is_valid_host_name(longest + "."));
}

TEST(host_name, invalid) {
    for (std::string_view bad : {"", ".", "..", ".example", "a..b", "exa mple", "exa\tmple", "a:b", "a/b", "a@b", "[::1]",
                                 "*.example", "example.org..", "127.1", "1.2.3.4", "1.2.3.4.5", "2130706433", "0x7f000001",
                                 "a.0X1F", "example.123"}) {
        SCOPED_TRACE(bad);
        EXPECT_FALSE(is_valid_host_name(bad));
    }
    EXPECT_FALSE(is_valid_host_name(std::string(64, 'a') + ".example"));
    EXPECT_FALSE(is_valid_host_name(std::string("a\0b", 3)));
    std::string too_long = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." + std::string(62, 'd');
    EXPECT_FALSE(is_valid_host_name(too_long));
}

TEST(target, make_target_classifies) {
    auto t = make_target("10.0.0.1", 80);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->kind, host_kind::ipv4);
    EXPECT_EQ(t->authority(), "10.0.0.1:80");
    t = make_target("::1", 443);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->kind, host_kind::ipv6);
    EXPECT_EQ(t->authority(), "[::1]:443");
    t = make_target("Example.org", 8443);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->kind, host_kind::name);
    EXPECT_EQ(t->authority(), "Example.org:8443");
    EXPECT_FALSE(make_target("127.1", 80));
    EXPECT_FALSE(make_target("", 80));
    EXPECT_FALSE(make_target("[::1]", 80));
}

}  // namespace
}  // namespace halfpipe::forward
