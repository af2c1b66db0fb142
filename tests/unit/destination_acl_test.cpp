// Destination ACL for the forward proxy (server/forward/destination_acl).
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "common/destination/destination_acl.hpp"

namespace halfpipe::forward {
namespace {

using std::nullopt;

ip_address ip(std::string_view text) {
    auto a = ip_address::parse(text);
    EXPECT_TRUE(a) << text;
    return a.value_or(ip_address{});
}

acl_rule allow_cidr(std::string_view cidr, std::optional<std::string_view> ports = nullopt) {
    return parse_rule("allow", cidr, nullopt, ports);
}
acl_rule deny_cidr(std::string_view cidr, std::optional<std::string_view> ports = nullopt) {
    return parse_rule("deny", cidr, nullopt, ports);
}
acl_rule allow_host(std::string_view host, std::optional<std::string_view> ports = nullopt) {
    return parse_rule("allow", nullopt, host, ports);
}
acl_rule deny_host(std::string_view host, std::optional<std::string_view> ports = nullopt) {
    return parse_rule("deny", nullopt, host, ports);
}

// check_address without a name, from text.
acl_decision addr(const destination_acl& acl, std::string_view text, std::uint16_t port = 443) {
    const auto a = ip(text);
    return acl.check_address(a.bytes, a.v6, port);
}

// check_address for a resolved address of `name`.
acl_decision resolved(const destination_acl& acl, std::string_view name, std::string_view text, std::uint16_t port = 443) {
    const auto a = ip(text);
    return acl.check_address(name, a.bytes, a.v6, port);
}

void expect_allowed(const acl_decision& d, std::size_t rule, bool provisional = false) {
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.rule, std::optional<std::size_t>(rule));
    EXPECT_EQ(d.provisional, provisional);
}

void expect_denied(const acl_decision& d, std::optional<std::size_t> rule = nullopt) {
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.rule, rule);
    EXPECT_FALSE(d.provisional);
}

std::string parse_error(std::string_view action, std::optional<std::string_view> cidr, std::optional<std::string_view> host,
                        std::optional<std::string_view> ports) {
    try {
        parse_rule(action, cidr, host, ports);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    ADD_FAILURE() << "no invalid_argument";
    return {};
}

// ---- defaults ------------------------------------------------------------------------------

TEST(destination_acl, empty_list_denies_everything) {
    const destination_acl acl;
    expect_denied(acl.check_name("example.org", 443));
    expect_denied(acl.check_name("127.0.0.1", 80));
    expect_denied(addr(acl, "127.0.0.1"));
    expect_denied(resolved(acl, "localhost", "::1"));
    EXPECT_EQ(acl.describe(acl.check_name("example.org", 443)), "denied: no rule matched");
}

TEST(destination_acl, loopback_only) {
    const auto acl = destination_acl::loopback_only();
    ASSERT_EQ(acl.rules().size(), 2u);
    EXPECT_EQ(acl.rules()[0].to_string(), "allow cidr=127.0.0.0/8");
    EXPECT_EQ(acl.rules()[1].to_string(), "allow cidr=::1/128");
    for (std::uint16_t port : {1, 80, 443, 65535}) {
        expect_allowed(addr(acl, "127.0.0.1", port), 0);
        expect_allowed(addr(acl, "::1", port), 1);
    }
    expect_allowed(addr(acl, "127.0.0.0"), 0);
    expect_allowed(addr(acl, "127.255.255.255"), 0);
    expect_denied(addr(acl, "126.255.255.255"));
    expect_denied(addr(acl, "128.0.0.0"));
    expect_denied(addr(acl, "10.0.0.1"));
    expect_denied(addr(acl, "0.0.0.0"));
    expect_denied(addr(acl, "::"));
    expect_denied(addr(acl, "::2"));
    expect_denied(addr(acl, "fe80::1"));
    expect_allowed(addr(acl, "::ffff:127.0.0.1"), 0);  // v4-mapped loopback is IPv4 loopback
    expect_denied(addr(acl, "::ffff:10.0.0.1"));
    expect_denied(addr(acl, "::127.0.0.1"));            // v4-compatible is not mapped
    // Literal requests are decided before resolution; names wait for it.
    expect_allowed(acl.check_name("127.0.0.1", 22), 0);
    expect_allowed(acl.check_name("::1", 22), 1);
    expect_allowed(acl.check_name("[::1]", 22), 1);
    expect_allowed(acl.check_name("::ffff:127.0.0.2", 22), 0);
    expect_denied(acl.check_name("192.0.2.1", 22));
    expect_allowed(acl.check_name("localhost", 22), 0, true);
    expect_allowed(resolved(acl, "localhost", "127.0.0.1", 22), 0);
    expect_denied(resolved(acl, "example.org", "93.184.216.34", 22));
    expect_denied(resolved(acl, "rebind.example", "10.0.0.1", 22));
}

// ---- ordering ------------------------------------------------------------------------------

TEST(destination_acl, first_match_wins) {
    const destination_acl narrow_first({deny_cidr("10.1.0.0/16"), allow_cidr("10.0.0.0/8")});
    expect_denied(addr(narrow_first, "10.1.2.3"), 0);
    expect_allowed(addr(narrow_first, "10.2.3.4"), 1);
    expect_denied(addr(narrow_first, "11.0.0.1"));

    const destination_acl wide_first({allow_cidr("10.0.0.0/8"), deny_cidr("10.1.0.0/16")});
    expect_allowed(addr(wide_first, "10.1.2.3"), 0);  // the deny is shadowed
}

TEST(destination_acl, explicit_catch_all_deny) {
    const destination_acl acl({allow_cidr("192.0.2.0/24", "443"), deny_cidr("0.0.0.0/0"), deny_cidr("::/0")});
    expect_allowed(addr(acl, "192.0.2.9", 443), 0);
    expect_denied(addr(acl, "192.0.2.9", 80), 1);
    expect_denied(addr(acl, "8.8.8.8"), 1);
    expect_denied(addr(acl, "2001:db8::1"), 2);
}

TEST(destination_acl, port_only_rules) {
    const destination_acl acl({parse_rule("deny", nullopt, nullopt, "25,465,587"), parse_rule("allow", nullopt, nullopt, nullopt)});
    expect_denied(addr(acl, "192.0.2.1", 25), 0);
    expect_denied(acl.check_name("mail.example", 587), 0);
    expect_allowed(addr(acl, "192.0.2.1", 443), 1);
    expect_allowed(acl.check_name("mail.example", 443), 1);  // final: no network rule can interfere
    EXPECT_EQ(acl.rules()[1].to_string(), "allow (everything)");
}

TEST(destination_acl, ports_select_rules) {
    const destination_acl acl({allow_cidr("10.0.0.0/8", "80,443"), allow_cidr("10.0.0.0/8", "1024-65535")});
    expect_allowed(addr(acl, "10.0.0.1", 80), 0);
    expect_allowed(addr(acl, "10.0.0.1", 443), 0);
    expect_denied(addr(acl, "10.0.0.1", 22));
    expect_denied(addr(acl, "10.0.0.1", 1023));
    expect_allowed(addr(acl, "10.0.0.1", 1024), 1);
    expect_allowed(addr(acl, "10.0.0.1", 65535), 1);
}

// ---- CIDR edges ----------------------------------------------------------------------------

TEST(destination_acl, ipv4_slash_0_matches_all_ipv4_and_no_ipv6) {
    const destination_acl acl({allow_cidr("0.0.0.0/0")});
    expect_allowed(addr(acl, "0.0.0.0"), 0);
    expect_allowed(addr(acl, "255.255.255.255"), 0);
    expect_allowed(addr(acl, "::ffff:1.2.3.4"), 0);
    expect_denied(addr(acl, "::"));
    expect_denied(addr(acl, "2001:db8::1"));
}

TEST(destination_acl, ipv6_slash_0_matches_all_ipv6_and_no_ipv4) {
    const destination_acl acl({allow_cidr("::/0")});
    expect_allowed(addr(acl, "::"), 0);
    expect_allowed(addr(acl, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 0);
    expect_denied(addr(acl, "1.2.3.4"));
    expect_denied(addr(acl, "::ffff:1.2.3.4"));  // mapped: checked as IPv4
}

TEST(destination_acl, slash_32_and_slash_128_are_single_addresses) {
    const destination_acl acl({allow_cidr("192.0.2.1/32"), allow_cidr("2001:db8::1/128")});
    expect_allowed(addr(acl, "192.0.2.1"), 0);
    expect_denied(addr(acl, "192.0.2.0"));
    expect_denied(addr(acl, "192.0.2.2"));
    expect_allowed(addr(acl, "2001:db8::1"), 1);
    expect_denied(addr(acl, "2001:db8::"));
    expect_denied(addr(acl, "2001:db8::2"));
    expect_denied(addr(acl, "2001:db8::1:1"));
}

TEST(destination_acl, prefixes_inside_a_byte) {
    const destination_acl acl({allow_cidr("172.16.0.0/12"), allow_cidr("192.0.2.128/25"), allow_cidr("fe80::/10"),
                               allow_cidr("2001:db8::/127")});
    expect_allowed(addr(acl, "172.16.0.0"), 0);
    expect_allowed(addr(acl, "172.31.255.255"), 0);
    expect_denied(addr(acl, "172.15.255.255"));
    expect_denied(addr(acl, "172.32.0.0"));
    expect_allowed(addr(acl, "192.0.2.128"), 1);
    expect_allowed(addr(acl, "192.0.2.255"), 1);
    expect_denied(addr(acl, "192.0.2.127"));
    expect_allowed(addr(acl, "fe80::1"), 2);
    expect_allowed(addr(acl, "febf:ffff::1"), 2);
    expect_denied(addr(acl, "fec0::1"));
    expect_allowed(addr(acl, "2001:db8::"), 3);
    expect_allowed(addr(acl, "2001:db8::1"), 3);
    expect_denied(addr(acl, "2001:db8::2"));

    const destination_acl half({allow_cidr("128.0.0.0/1"), allow_cidr("8000::/1")});
    expect_allowed(addr(half, "128.0.0.0"), 0);
    expect_allowed(addr(half, "255.1.2.3"), 0);
    expect_denied(addr(half, "127.255.255.255"));
    expect_allowed(addr(half, "8000::"), 1);
    expect_denied(addr(half, "7fff:ffff::"));
}

TEST(destination_acl, ipv4_bytes_beyond_the_fourth_are_ignored) {
    const destination_acl acl({allow_cidr("10.0.0.0/8")});
    std::array<std::uint8_t, 16> bytes{10, 1, 2, 3, 0xde, 0xad};
    expect_allowed(acl.check_address(bytes, false, 80), 0);
}

TEST(destination_acl, ipv4_mapped_addresses_are_checked_as_ipv4) {
    const destination_acl acl({deny_cidr("10.0.0.0/8"), allow_cidr("::/0"), allow_cidr("0.0.0.0/0", "443")});
    expect_denied(addr(acl, "::ffff:10.1.1.1"), 0);  // not let through by ::/0
    expect_denied(addr(acl, "::ffff:192.0.2.1", 80));
    expect_allowed(addr(acl, "::ffff:192.0.2.1", 443), 2);
    expect_denied(acl.check_name("::ffff:10.0.0.1", 443), 0);
    expect_denied(acl.check_name("[::ffff:10.0.0.1]", 443), 0);
    expect_denied(resolved(acl, "x.example", "::ffff:10.0.0.1"), 0);
}

TEST(destination_acl, mapped_cidrs_become_ipv4_cidrs) {
    EXPECT_EQ(allow_cidr("::ffff:10.0.0.0/104").to_string(), "allow cidr=10.0.0.0/8");
    EXPECT_EQ(allow_cidr("::ffff:0.0.0.0/96").to_string(), "allow cidr=0.0.0.0/0");
    EXPECT_EQ(allow_cidr("::ffff:192.0.2.1").to_string(), "allow cidr=192.0.2.1/32");
    const destination_acl acl({allow_cidr("::ffff:10.0.0.0/104")});
    expect_allowed(addr(acl, "10.9.9.9"), 0);
    expect_allowed(addr(acl, "::ffff:10.9.9.9"), 0);
}

TEST(destination_acl, address_without_prefix_is_a_single_host) {
    EXPECT_EQ(allow_cidr("192.0.2.7").to_string(), "allow cidr=192.0.2.7/32");
    EXPECT_EQ(allow_cidr("2001:db8::7").to_string(), "allow cidr=2001:db8::7/128");
    EXPECT_EQ(allow_cidr(" 10.0.0.0/8 ").to_string(), "allow cidr=10.0.0.0/8");
}

TEST(parse_rule, cidr_errors) {
    EXPECT_EQ(parse_error("allow", "10.0.0.1/8", nullopt, nullopt),
              "invalid cidr \"10.0.0.1/8\": host bits are set (network would be 10.0.0.0/8)");
    EXPECT_EQ(parse_error("allow", "10.0.0.0/33", nullopt, nullopt),
              "invalid cidr \"10.0.0.0/33\": prefix length must be a number 0..32");
    EXPECT_EQ(parse_error("allow", "::/129", nullopt, nullopt), "invalid cidr \"::/129\": prefix length must be a number 0..128");
    EXPECT_EQ(parse_error("allow", "10.0.0/8", nullopt, nullopt),
              "invalid cidr \"10.0.0/8\": \"10.0.0\" is not an IPv4 or IPv6 address");
    EXPECT_NE(parse_error("allow", "2001:db8::1/64", nullopt, nullopt).find("host bits"), std::string::npos);
    for (std::string_view bad : {"", "/8", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8/8", "10.0.0.0/x", "256.0.0.0/8",
                                 "010.0.0.0/8", "example.org/8", "fe80::%eth0/64", "[::1]/128", "10.0.0.0 /8", "*"}) {
        SCOPED_TRACE(bad);
        EXPECT_THROW(parse_rule("allow", bad, nullopt, nullopt), std::invalid_argument);
    }
}

// ---- host patterns -------------------------------------------------------------------------

TEST(destination_acl, exact_host_is_case_insensitive_and_ignores_a_trailing_dot) {
    const destination_acl acl({allow_host("Example.ORG")});
    expect_allowed(acl.check_name("example.org", 443), 0);
    expect_allowed(acl.check_name("EXAMPLE.org.", 443), 0);
    expect_denied(acl.check_name("www.example.org", 443));
    expect_denied(acl.check_name("example.org.evil", 443));
    expect_denied(acl.check_name("xexample.org", 443));
    EXPECT_EQ(acl.rules()[0].to_string(), "allow host=example.org");
}

TEST(destination_acl, wildcard_matches_subdomains_only) {
    const destination_acl acl({allow_host("*.Example.org.")});
    expect_allowed(acl.check_name("a.example.org", 443), 0);
    expect_allowed(acl.check_name("A.B.EXAMPLE.ORG.", 443), 0);
    expect_denied(acl.check_name("example.org", 443));
    expect_denied(acl.check_name("badexample.org", 443));
    expect_denied(acl.check_name("a.example.org.evil", 443));
    expect_denied(acl.check_name(".example.org", 443));
    EXPECT_EQ(acl.rules()[0].to_string(), "allow host=*.example.org");
}

TEST(destination_acl, star_matches_every_name_but_no_literal) {
    const destination_acl acl({allow_host("*", "443")});
    expect_allowed(acl.check_name("anything.example", 443), 0);
    expect_allowed(acl.check_name("localhost", 443), 0);
    expect_denied(acl.check_name("localhost", 80));
    expect_denied(acl.check_name("10.0.0.1", 443));
    expect_denied(acl.check_name("::1", 443));
    expect_denied(addr(acl, "10.0.0.1"));
}

TEST(destination_acl, host_rules_match_only_the_requested_name) {
    const destination_acl acl({allow_host("*.example.org", "443")});
    expect_allowed(acl.check_name("api.example.org", 443), 0);
    expect_denied(acl.check_name("api.example.org", 80));
    // Whatever it resolves to, with the name the address is allowed; without it, not.
    expect_allowed(resolved(acl, "api.example.org", "192.0.2.1"), 0);
    expect_allowed(resolved(acl, "api.example.org", "2001:db8::1"), 0);
    expect_denied(addr(acl, "192.0.2.1"));
    expect_denied(resolved(acl, "evil.example", "192.0.2.1"));
    // An IP literal given as the "name" is not a name.
    expect_denied(resolved(acl, "192.0.2.1", "192.0.2.1"));
    expect_denied(resolved(acl, "", "192.0.2.1"));
}

TEST(parse_rule, host_errors) {
    EXPECT_EQ(parse_error("allow", nullopt, "10.0.0.1", nullopt),
              "invalid host \"10.0.0.1\": an IP address is not a host name; use cidr");
    EXPECT_EQ(parse_error("allow", nullopt, "a.*.org", nullopt),
              "invalid host \"a.*.org\": a wildcard is only allowed as a leading \"*.\" or as \"*\"");
    EXPECT_EQ(parse_error("allow", nullopt, "bad name", nullopt), "invalid host \"bad name\": not a valid host name");
    for (std::string_view bad : {"", "*example.org", "**.example.org", "*.*.example.org", "example.*", "*.", ".", "a..b",
                                 "::1", "[::1]", "http://example.org", "example.org:443", "exa_mple!.org", "127.1"}) {
        SCOPED_TRACE(bad);
        EXPECT_THROW(parse_rule("allow", nullopt, bad, nullopt), std::invalid_argument);
    }
}

// ---- names and addresses together --------------------------------------------------------

TEST(destination_acl, rebinding_to_a_denied_network_is_caught) {
    const destination_acl acl({deny_cidr("10.0.0.0/8"), deny_cidr("127.0.0.0/8"), deny_cidr("::1/128"),
                               allow_host("*.example.org")});
    // Before resolution: allowed only provisionally, because a network rule comes first.
    expect_allowed(acl.check_name("www.example.org", 443), 3, true);
    expect_allowed(resolved(acl, "www.example.org", "192.0.2.10"), 3);
    expect_denied(resolved(acl, "www.example.org", "10.0.0.5"), 0);
    expect_denied(resolved(acl, "www.example.org", "127.0.0.1"), 1);
    expect_denied(resolved(acl, "www.example.org", "::1"), 2);
    expect_denied(resolved(acl, "www.example.org", "::ffff:10.0.0.5"), 0);
    // Other names: denied before any DNS query.
    expect_denied(acl.check_name("evil.test", 443));
    expect_denied(resolved(acl, "evil.test", "192.0.2.10"));
}

TEST(destination_acl, a_host_rule_before_a_network_rule_wins) {
    // Order decides: the admin put the name first.
    const destination_acl acl({allow_host("intranet.example"), deny_cidr("10.0.0.0/8"), allow_cidr("0.0.0.0/0")});
    expect_allowed(acl.check_name("intranet.example", 443), 0);
    expect_allowed(resolved(acl, "intranet.example", "10.1.1.1"), 0);
    expect_denied(resolved(acl, "other.example", "10.1.1.1"), 1);
    expect_allowed(acl.check_name("other.example", 443), 2, true);
    expect_allowed(resolved(acl, "other.example", "192.0.2.1"), 2);
}

TEST(destination_acl, network_and_host_in_one_rule_must_both_match) {
    const destination_acl acl({parse_rule("allow", "10.0.0.0/8", "*.corp.example", "443")});
    expect_allowed(acl.check_name("db.corp.example", 443), 0, true);
    expect_denied(acl.check_name("db.corp.example", 80));
    expect_denied(acl.check_name("db.other.example", 443));
    expect_allowed(resolved(acl, "db.corp.example", "10.2.3.4"), 0);
    expect_denied(resolved(acl, "db.corp.example", "192.0.2.1"));
    expect_denied(resolved(acl, "db.other.example", "10.2.3.4"));
    expect_denied(addr(acl, "10.2.3.4"));
    expect_denied(acl.check_name("10.2.3.4", 443));
    EXPECT_EQ(acl.rules()[0].to_string(), "allow cidr=10.0.0.0/8 host=*.corp.example ports=443");
}

TEST(destination_acl, denies_for_names_are_final_and_skip_irrelevant_network_rules) {
    const destination_acl acl({deny_cidr("10.0.0.0/8"), deny_host("*.blocked.example"), allow_cidr("0.0.0.0/0")});
    expect_denied(acl.check_name("x.blocked.example", 443), 1);
    expect_allowed(acl.check_name("x.fine.example", 443), 2, true);
}

TEST(destination_acl, ip_literal_names_are_decided_exactly) {
    const destination_acl acl({deny_cidr("10.0.0.0/8"), allow_host("*.example.org"), allow_cidr("192.0.2.0/24")});
    expect_denied(acl.check_name("10.0.0.1", 443), 0);
    expect_allowed(acl.check_name("192.0.2.1", 443), 2);
    expect_denied(acl.check_name("198.51.100.1", 443));
    expect_denied(acl.check_name("2001:db8::1", 443));
}

TEST(destination_acl, describe_names_the_rule) {
    const destination_acl acl({deny_cidr("10.0.0.0/8", "22"), allow_host("*.example.org", "80,443,8000-8080")});
    EXPECT_EQ(acl.describe(addr(acl, "10.0.0.1", 22)), "denied by rule 0 (deny cidr=10.0.0.0/8 ports=22)");
    EXPECT_EQ(acl.describe(acl.check_name("a.example.org", 8080)),
              "allowed by rule 1 (allow host=*.example.org ports=80,443,8000-8080)");
    const destination_acl provisional({deny_cidr("10.0.0.0/8"), allow_host("*.example.org")});
    EXPECT_EQ(provisional.describe(provisional.check_name("a.example.org", 1)),
              "provisionally allowed by rule 1 (allow host=*.example.org)");
}

// ---- ports and actions ---------------------------------------------------------------------

TEST(parse_rule, ports) {
    EXPECT_EQ(parse_rule("allow", nullopt, nullopt, "443").ports, (std::vector<port_range>{{443, 443}}));
    EXPECT_EQ(parse_rule("allow", nullopt, nullopt, "80,443").ports, (std::vector<port_range>{{80, 80}, {443, 443}}));
    EXPECT_EQ(parse_rule("allow", nullopt, nullopt, "1024-65535").ports, (std::vector<port_range>{{1024, 65535}}));
    EXPECT_EQ(parse_rule("allow", nullopt, nullopt, " 22 , 80 - 90,1-1 ").ports,
              (std::vector<port_range>{{22, 22}, {80, 90}, {1, 1}}));
    EXPECT_EQ(parse_rule("allow", nullopt, nullopt, "1-65535").ports, (std::vector<port_range>{{1, 65535}}));
    EXPECT_TRUE(parse_rule("allow", nullopt, nullopt, nullopt).ports.empty());
}

TEST(parse_rule, port_errors) {
    EXPECT_EQ(parse_error("allow", nullopt, nullopt, "90-80"), "invalid ports \"90-80\": range \"90-80\" runs backwards");
    EXPECT_EQ(parse_error("allow", nullopt, nullopt, "0"), "invalid ports \"0\": \"0\" is not a port 1..65535 or a range of them");
    EXPECT_EQ(parse_error("allow", nullopt, nullopt, ""), "invalid ports \"\": empty (leave ports out for every port)");
    EXPECT_EQ(parse_error("allow", nullopt, nullopt, "80,,443"), "invalid ports \"80,,443\": empty entry");
    for (std::string_view bad : {" ", "65536", "99999", "100000", "-80", "80-", "a", "80;443", "1-2-3", "443,", ",443",
                                 "0-10", "+80", "8o"}) {
        SCOPED_TRACE(bad);
        EXPECT_THROW(parse_rule("allow", nullopt, nullopt, bad), std::invalid_argument);
    }
}

TEST(parse_rule, actions) {
    EXPECT_TRUE(parse_rule("allow", nullopt, nullopt, nullopt).allow);
    EXPECT_FALSE(parse_rule("deny", nullopt, nullopt, nullopt).allow);
    EXPECT_EQ(parse_error("permit", "10.0.0.0/8", nullopt, nullopt), "invalid action \"permit\": expected \"allow\" or \"deny\"");
    EXPECT_THROW(parse_rule("", nullopt, nullopt, nullopt), std::invalid_argument);
    EXPECT_THROW(parse_rule("Allow", nullopt, nullopt, nullopt), std::invalid_argument);
}

TEST(parse_rule, errors_name_the_first_bad_field) {
    // Action is checked first, then cidr, host, ports.
    EXPECT_NE(parse_error("nope", "bad", "bad host", "0").find("action"), std::string::npos);
    EXPECT_NE(parse_error("allow", "bad", "bad host", "0").find("cidr"), std::string::npos);
    EXPECT_NE(parse_error("allow", "10.0.0.0/8", "bad host", "0").find("host"), std::string::npos);
    EXPECT_NE(parse_error("allow", "10.0.0.0/8", "ok.example", "0").find("ports"), std::string::npos);
}

}  // namespace
}  // namespace halfpipe::forward
