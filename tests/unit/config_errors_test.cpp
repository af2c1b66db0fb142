// Invalid configurations: each must fail with config_error naming source, line and key path.
#include <gtest/gtest.h>

#include "config/config.hpp"

namespace halfpipe::config {
namespace {

// Checks that loading `yaml` as "test.yaml" fails with a message that starts with
// "test.yaml:<line>: <path>: " and contains `fragment`.
::testing::AssertionResult fails_with(const std::string& yaml, int line, const std::string& path,
                                      const std::string& fragment) {
    std::string message;
    try {
        load_string(yaml, "test.yaml");
        return ::testing::AssertionFailure() << "loaded without error:\n" << yaml;
    } catch (const config_error& e) {
        message = e.what();
    }
    const std::string prefix = "test.yaml:" + std::to_string(line) + ": " + (path.empty() ? "" : path + ": ");
    if (message.rfind(prefix, 0) != 0)
        return ::testing::AssertionFailure()
               << "message \"" << message << "\" does not start with \"" << prefix << "\"";
    if (message.find(fragment) == std::string::npos)
        return ::testing::AssertionFailure() << "message \"" << message << "\" lacks \"" << fragment << "\"";
    return ::testing::AssertionSuccess();
}

// A valid listener on lines 1-5; `extra` starts at line 6 and may add keys to it.
std::string listener_with(const std::string& extra) {
    return "listeners:\n"
           "  - name: web\n"
           "    bind: 127.0.0.1:8080\n"
           "    upstream:\n"
           "      address: 127.0.0.1:9000\n" +
           extra;
}

// ---- YAML itself -------------------------------------------------------------

TEST(config_errors, yaml_syntax_error_has_its_line) {
    EXPECT_TRUE(fails_with("workers: 2\nlisteners:\n  - name: a\n   bind: x\n", 4, "", "invalid YAML: "));
    EXPECT_TRUE(fails_with("workers: 2\nadmin: {address: 127.0.0.1:1\nlisteners: []\n", 3, "", "invalid YAML: "));
    EXPECT_TRUE(fails_with("listeners: *nowhere\n", 1, "", "invalid YAML: "));
}

TEST(config_errors, unquoted_ipv6_gets_a_hint) {
    const std::string hint = "IPv6 addresses must be quoted in YAML, e.g. \"[::1]:8080\"";
    // Block context: a syntax error.
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind: [::1]:8080\n", 3, "", "invalid YAML: "));
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind: [::1]:8080\n", 3, "", hint));
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind:\n      - [::1]:8080\n", 4, "", hint));
    // Flow context: valid YAML of the wrong shape.
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind: [127.0.0.1:1, [::1]:8080]\n", 3,
                           "listeners[0].bind[1]", "expected a host:port address, got a map (" + hint + ")"));
    EXPECT_TRUE(fails_with(listener_with("      source_address: [::1]\n"), 6, "listeners[0].upstream.source_address",
                           "expected an IP address, got a list"));
    // Other syntax errors get no such hint.
    try {
        load_string("listeners:\n  - name: a\n   bind: \"[::1]:80\"\n");
        FAIL();
    } catch (const config_error& e) {
        EXPECT_EQ(std::string(e.what()).find("quoted"), std::string::npos) << e.what();
    }
}

TEST(config_errors, empty_document) {
    EXPECT_TRUE(fails_with("", 1, "", "the configuration is empty"));
    EXPECT_TRUE(fails_with("# nothing but a comment\n", 1, "", "the configuration is empty"));
}

TEST(config_errors, top_level_must_be_a_map) {
    EXPECT_TRUE(fails_with("- a\n- b\n", 1, "", "expected a map, got a list"));
    EXPECT_TRUE(fails_with("hello\n", 1, "", "expected a map, got \"hello\""));
}

TEST(config_errors, one_document_only) {
    EXPECT_TRUE(fails_with(listener_with("---\nworkers: 1\n"), 7, "", "expected one YAML document"));
}

TEST(config_errors, source_name_defaults_to_string) {
    try {
        load_string("workers: x\n");
        FAIL();
    } catch (const config_error& e) {
        EXPECT_EQ(std::string(e.what()), "<string>:1: workers: expected an integer, got \"x\"");
    }
}

// ---- Unknown and repeated keys -----------------------------------------------

TEST(config_errors, unknown_keys_at_every_level) {
    EXPECT_TRUE(fails_with("worker: 2\n" + listener_with(""), 1, "worker",
                           "unknown key (expected one of: workers, cpu_affinity, drain_timeout, resolve_timeout, "
                           "access_log, admin, listeners)"));
    EXPECT_TRUE(fails_with("admin:\n  address: 127.0.0.1:9901\n  port: 1\n" + listener_with(""), 3, "admin.port",
                           "unknown key (expected one of: address, token)"));
    EXPECT_TRUE(fails_with(listener_with("    bnd: 127.0.0.1:1\n"), 6, "listeners[0].bnd", "unknown key"));
    EXPECT_TRUE(fails_with(listener_with("      port: 9000\n"), 6, "listeners[0].upstream.port",
                           "unknown key (expected one of: address, source_address, connect_failure)"));
    EXPECT_TRUE(fails_with(listener_with("    timeouts:\n      idle: 1s\n      idel: 1s\n"), 8,
                           "listeners[0].timeouts.idel",
                           "unknown key (expected one of: connect, idle, half_close, max_lifetime, rst_flush, handshake, "
                           "lingering_close)"));
    EXPECT_TRUE(fails_with(listener_with("    keepalive: {idle: 1s, count: 3}\n"), 6, "listeners[0].keepalive.count",
                           "unknown key (expected one of: idle, interval, probes)"));
}

TEST(config_errors, unknown_key_in_second_listener) {
    EXPECT_TRUE(fails_with(listener_with("  - name: b\n"
                                         "    bind: 127.0.0.1:1\n"
                                         "    upstream: {address: h:1}\n"
                                         "    lingr: rst\n"),
                           9, "listeners[1].lingr", "unknown key"));
}

TEST(config_errors, long_unknown_keys_are_shortened) {
    const std::string key(100, 'k');
    EXPECT_TRUE(fails_with(key + ": 1\n", 1, std::string(60, 'k') + "...", "unknown key"));
}

TEST(config_errors, repeated_key) {
    EXPECT_TRUE(fails_with("workers: 1\nworkers: 2\n" + listener_with(""), 2, "workers", "key is given twice"));
    EXPECT_TRUE(
        fails_with(listener_with("    upstream: {address: h:1}\n"), 6, "listeners[0].upstream", "key is given twice"));
}

TEST(config_errors, non_scalar_key) {
    EXPECT_TRUE(fails_with("? [a, b]\n: 1\n" + listener_with(""), 1, "", "map keys must be plain names, got a list"));
}

// ---- Wrong types --------------------------------------------------------------

TEST(config_errors, map_where_a_scalar_is_expected) {
    EXPECT_TRUE(fails_with("workers: {a: 1}\n" + listener_with(""), 1, "workers", "expected an integer, got a map"));
    EXPECT_TRUE(fails_with(listener_with("    buffer_size: [1]\n"), 6, "listeners[0].buffer_size",
                           "expected a size, got a list"));
    EXPECT_TRUE(
        fails_with("listeners:\n  - name: {first: web}\n", 2, "listeners[0].name", "expected a name, got a map"));
    EXPECT_TRUE(fails_with(listener_with("      address: {host: h}\n"), 6, "listeners[0].upstream.address",
                           "key is given twice"));
    EXPECT_TRUE(
        fails_with("listeners:\n  - name: web\n    bind: 127.0.0.1:1\n    upstream:\n      address:\n"
                   "        host: h\n",
                   5, "listeners[0].upstream.address", "expected a host:port address, got a map"));
}

TEST(config_errors, value_on_following_lines_is_blamed_on_its_key) {
    EXPECT_TRUE(fails_with(listener_with("    timeouts:\n      idle:\n        - 1s\n"), 7, "listeners[0].timeouts.idle",
                           "expected a duration or off, got a list"));
}

TEST(config_errors, scalar_where_a_map_or_list_is_expected) {
    EXPECT_TRUE(
        fails_with(listener_with("    timeouts: 5s\n"), 6, "listeners[0].timeouts", "expected a map, got \"5s\""));
    EXPECT_TRUE(fails_with("listeners: web\n", 1, "listeners", "expected a list of listeners, got \"web\""));
    EXPECT_TRUE(fails_with("listeners:\n  name: web\n", 1, "listeners", "expected a list of listeners, got a map"));
    EXPECT_TRUE(fails_with("listeners:\n  - web\n", 2, "listeners[0]", "expected a map, got \"web\""));
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind: 127.0.0.1:1\n    upstream: h:1\n", 4,
                           "listeners[0].upstream", "expected a map, got \"h:1\""));
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind: {a: b}\n", 3, "listeners[0].bind",
                           "expected an address or a list of addresses, got a map"));
    EXPECT_TRUE(fails_with("admin: 127.0.0.1:9901\n" + listener_with(""), 1, "admin",
                           "expected a map {address, token} or off, got \"127.0.0.1:9901\""));
    EXPECT_TRUE(fails_with(listener_with("    keepalive: on\n"), 6, "listeners[0].keepalive",
                           "expected a map {idle, interval, probes} or off, got \"on\""));
}

TEST(config_errors, null_values) {
    EXPECT_TRUE(fails_with("workers:\n" + listener_with(""), 1, "workers", "expected an integer, got nothing"));
    EXPECT_TRUE(fails_with("listeners:\n", 1, "listeners", "expected a list of listeners, got nothing"));
    EXPECT_TRUE(fails_with(listener_with("    linger: ~\n"), 6, "listeners[0].linger",
                           "expected rst, fin or close, got nothing"));
    EXPECT_TRUE(fails_with(listener_with("    relay: ~\n"), 6, "listeners[0].relay",
                           "expected copy or splice, got nothing"));
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind:\n    upstream: {address: h:1}\n", 3,
                           "listeners[0].bind", "got nothing"));
}

TEST(config_errors, bad_booleans) {
    EXPECT_TRUE(
        fails_with("access_log: abc\n" + listener_with(""), 1, "access_log", "expected true or false, got \"abc\""));
    EXPECT_TRUE(fails_with(listener_with("    tcp_nodelay: 1\n"), 6, "listeners[0].tcp_nodelay",
                           "expected true or false, got \"1\""));
    EXPECT_TRUE(fails_with(listener_with("    tcp_nodelay: yes please\n"), 6, "listeners[0].tcp_nodelay",
                           "expected true or false"));
}

TEST(config_errors, bad_integers) {
    EXPECT_TRUE(fails_with("workers: 1.5\n" + listener_with(""), 1, "workers", "expected an integer, got \"1.5\""));
    EXPECT_TRUE(fails_with("workers: 0x10\n" + listener_with(""), 1, "workers", "expected an integer, got \"0x10\""));
    EXPECT_TRUE(fails_with("workers: +4\n" + listener_with(""), 1, "workers", "expected an integer"));
    EXPECT_TRUE(
        fails_with("workers: 1025\n" + listener_with(""), 1, "workers", "must be between 0 and 1024, got 1025"));
    EXPECT_TRUE(fails_with("workers: -1\n" + listener_with(""), 1, "workers", "must be between 0 and 1024, got -1"));
    EXPECT_TRUE(
        fails_with("workers: 99999999999999999999\n" + listener_with(""), 1, "workers", "must be between 0 and 1024"));
    EXPECT_TRUE(
        fails_with(listener_with("    backlog: 0\n"), 6, "listeners[0].backlog", "must be between 1 and 65535"));
    EXPECT_TRUE(fails_with(listener_with("    backlog: 65536\n"), 6, "listeners[0].backlog", "must be between"));
    EXPECT_TRUE(fails_with(listener_with("    max_connections: 0\n"), 6, "listeners[0].max_connections",
                           "must be between 1 and"));
    EXPECT_TRUE(fails_with(listener_with("    max_connections: lots\n"), 6, "listeners[0].max_connections",
                           "expected an integer, got \"lots\""));
    EXPECT_TRUE(fails_with(listener_with("    keepalive: {probes: 128}\n"), 6, "listeners[0].keepalive.probes",
                           "must be between 1 and 127"));
    EXPECT_TRUE(fails_with(listener_with("    keepalive: {probes: 0}\n"), 6, "listeners[0].keepalive.probes",
                           "must be between 1 and 127"));
}

// ---- Durations and sizes in context -------------------------------------------

TEST(config_errors, invalid_duration_message_matches_the_documented_form) {
    try {
        load_string(listener_with("    timeouts:\n      idle: 5x\n"), "halfpipe.yaml");
        FAIL();
    } catch (const config_error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "halfpipe.yaml:7: listeners[0].timeouts.idle: invalid duration \"5x\" "
                  "(expected e.g. 250ms, 5s, 1h30m or off)");
    }
}

TEST(config_errors, durations) {
    EXPECT_TRUE(fails_with(listener_with("    timeouts: {idle: 30}\n"), 6, "listeners[0].timeouts.idle",
                           "a unit is required (ms, s, m or h), e.g. 30s"));
    EXPECT_TRUE(fails_with(listener_with("    timeouts: {connect: off}\n"), 6, "listeners[0].timeouts.connect",
                           "\"off\" is not allowed here"));
    EXPECT_TRUE(fails_with(listener_with("    timeouts: {rst_flush: off}\n"), 6, "listeners[0].timeouts.rst_flush",
                           "\"off\" is not allowed here"));
    EXPECT_TRUE(
        fails_with("drain_timeout: off\n" + listener_with(""), 1, "drain_timeout", "\"off\" is not allowed here"));
    EXPECT_TRUE(fails_with(listener_with("    timeouts: {connect: 0s}\n"), 6, "listeners[0].timeouts.connect",
                           "must be greater than 0"));
    EXPECT_TRUE(fails_with(listener_with("    timeouts: {rst_flush: 0ms}\n"), 6, "listeners[0].timeouts.rst_flush",
                           "must be greater than 0"));
    EXPECT_TRUE(fails_with(listener_with("    timeouts: {lingering_close: 11s}\n"), 6,
                           "listeners[0].timeouts.lingering_close", "at most 10s (or off)"));
    EXPECT_TRUE(fails_with("drain_timeout: 0s\n" + listener_with(""), 1, "drain_timeout", "must be greater than 0"));
    EXPECT_TRUE(fails_with("resolve_timeout: 0s\n" + listener_with(""), 1, "resolve_timeout",
                           "must be greater than 0 (use off to disable)"));
    EXPECT_TRUE(fails_with("resolve_timeout: 5\n" + listener_with(""), 1, "resolve_timeout",
                           "a unit is required (ms, s, m or h), e.g. 5s"));
    EXPECT_TRUE(fails_with(listener_with("    timeouts: {half_close: 0s}\n"), 6, "listeners[0].timeouts.half_close",
                           "must be greater than 0 (use off to disable)"));
    EXPECT_TRUE(fails_with(listener_with("    timeouts: {max_lifetime: 1d}\n"), 6, "listeners[0].timeouts.max_lifetime",
                           "invalid duration \"1d\""));
}

TEST(config_errors, keepalive_durations_are_whole_seconds) {
    EXPECT_TRUE(fails_with(listener_with("    keepalive: {idle: 1500ms}\n"), 6, "listeners[0].keepalive.idle",
                           "must be a whole number of seconds"));
    EXPECT_TRUE(fails_with(listener_with("    keepalive: {interval: 500ms}\n"), 6, "listeners[0].keepalive.interval",
                           "must be a whole number of seconds"));
    EXPECT_TRUE(fails_with(listener_with("    keepalive: {idle: 0s}\n"), 6, "listeners[0].keepalive.idle",
                           "must be greater than 0"));
    EXPECT_TRUE(fails_with(listener_with("    keepalive: {idle: 32768s}\n"), 6, "listeners[0].keepalive.idle",
                           "must be at most 32767s"));
    EXPECT_TRUE(fails_with(listener_with("    keepalive: {interval: off}\n"), 6, "listeners[0].keepalive.interval",
                           "\"off\" is not allowed here"));
}

TEST(config_errors, buffer_size) {
    EXPECT_TRUE(fails_with(listener_with("    buffer_size: 1023\n"), 6, "listeners[0].buffer_size",
                           "must be between 1KiB and 16MiB, got 1023"));
    EXPECT_TRUE(fails_with(listener_with("    buffer_size: 17MiB\n"), 6, "listeners[0].buffer_size",
                           "must be between 1KiB and 16MiB, got 17MiB"));
    EXPECT_TRUE(
        fails_with(listener_with("    buffer_size: 64kb\n"), 6, "listeners[0].buffer_size", "invalid size \"64kb\""));
}

// ---- Impossible values ----------------------------------------------------------

TEST(config_errors, required_keys) {
    EXPECT_TRUE(fails_with("workers: 1\n", 1, "listeners", "required key is missing"));
    EXPECT_TRUE(fails_with("listeners:\n  - bind: 127.0.0.1:1\n    upstream: {address: h:1}\n", 2, "listeners[0].name",
                           "required key is missing"));
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    upstream: {address: h:1}\n", 2, "listeners[0].bind",
                           "required key is missing"));
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind: 127.0.0.1:1\n", 2, "listeners[0].upstream",
                           "required key is missing"));
    EXPECT_TRUE(
        fails_with("listeners:\n  - name: web\n    bind: 127.0.0.1:1\n    upstream:\n      connect_failure: rst\n", 4,
                   "listeners[0].upstream.address", "required key is missing"));
    EXPECT_TRUE(fails_with("admin: {}\n" + listener_with(""), 1, "admin.address", "required key is missing"));
}

TEST(config_errors, empty_lists) {
    EXPECT_TRUE(fails_with("workers: 1\nlisteners: []\n", 2, "listeners", "at least one listener is required"));
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind: []\n    upstream: {address: h:1}\n", 3,
                           "listeners[0].bind", "at least one bind address is required"));
}

TEST(config_errors, listener_names) {
    EXPECT_TRUE(fails_with("listeners:\n  - name: my web\n", 2, "listeners[0].name",
                           "invalid listener name \"my web\" (use letters, digits, '_', '.' and '-')"));
    EXPECT_TRUE(fails_with("listeners:\n  - name: \"\"\n", 2, "listeners[0].name", "invalid listener name \"\""));
    EXPECT_TRUE(fails_with("listeners:\n  - name: web/1\n", 2, "listeners[0].name", "invalid listener name"));
}

TEST(config_errors, duplicate_listener_names) {
    EXPECT_TRUE(fails_with(listener_with("  - name: other\n"
                                         "    bind: 127.0.0.1:1\n"
                                         "    upstream: {address: h:1}\n"
                                         "  - name: web\n"
                                         "    bind: 127.0.0.1:2\n"
                                         "    upstream: {address: h:1}\n"),
                           9, "listeners[2].name", "duplicate listener name \"web\" (also listeners[0])"));
}

TEST(config_errors, bind_addresses) {
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind: localhost:8080\n", 3, "listeners[0].bind",
                           "\"localhost\" is not an IP address (host names are not allowed here)"));
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind: [127.0.0.1:1, \"::1:8080\"]\n", 3,
                           "listeners[0].bind[1]", "IPv6 addresses must be in brackets"));
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind:\n      - 127.0.0.1:1\n      - 127.0.0.1:70000\n", 5,
                           "listeners[0].bind[1]", "out of range"));
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind:\n      - [127.0.0.1:1]\n", 4, "listeners[0].bind[0]",
                           "expected a host:port address, got a list"));
}

TEST(config_errors, same_bind_address_twice) {
    const std::string second =
        "  - name: other\n"
        "    bind: [127.0.0.1:1, 127.0.0.1:8080]\n"
        "    upstream: {address: h:1}\n";
    EXPECT_TRUE(fails_with(listener_with(second), 7, "listeners[1].bind[1]",
                           "127.0.0.1:8080 is already bound by listeners[0].bind (listener \"web\")"));
    // Within one listener too.
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind: [\"[::1]:80\", \"[0:0::1]:80\"]\n", 3,
                           "listeners[0].bind[1]", "[0:0::1]:80 is already bound by listeners[0].bind[0]"));
}

TEST(config_errors, bind_on_the_admin_address) {
    EXPECT_TRUE(fails_with("admin:\n  address: 127.0.0.1:8080\n" + listener_with(""), 5, "listeners[0].bind",
                           "127.0.0.1:8080 is already bound by admin.address"));
    EXPECT_TRUE(
        fails_with("admin: {address: localhost:1}\n" + listener_with(""), 1, "admin.address", "not an IP address"));
}

TEST(config_errors, upstream_values) {
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind: 127.0.0.1:1\n    upstream:\n      address: h:0\n", 5,
                           "listeners[0].upstream.address", "port 0 is not allowed for an upstream"));
    EXPECT_TRUE(fails_with("listeners:\n  - name: web\n    bind: 127.0.0.1:1\n    upstream:\n      address: h\n", 5,
                           "listeners[0].upstream.address", "missing port"));
    EXPECT_TRUE(fails_with(listener_with("      source_address: backend.local\n"), 6,
                           "listeners[0].upstream.source_address", "expected an IP address without port"));
    EXPECT_TRUE(fails_with(listener_with("      source_address: 127.0.0.1:5000\n"), 6,
                           "listeners[0].upstream.source_address", "expected an IP address without port"));
    EXPECT_TRUE(fails_with(listener_with("      source_address: \"[::1]\"\n"), 6,
                           "listeners[0].upstream.source_address", "expected an IP address without port"));
}

TEST(config_errors, close_kinds) {
    EXPECT_TRUE(fails_with(listener_with("      connect_failure: fin\n"), 6, "listeners[0].upstream.connect_failure",
                           "fin is not allowed here"));
    EXPECT_TRUE(fails_with(listener_with("      connect_failure: reset\n"), 6, "listeners[0].upstream.connect_failure",
                           "expected rst or close, got \"reset\""));
    EXPECT_TRUE(fails_with(listener_with("    linger: RST\n"), 6, "listeners[0].linger",
                           "expected rst, fin or close, got \"RST\""));
    EXPECT_TRUE(fails_with(listener_with("    relay: zerocopy\n"), 6, "listeners[0].relay",
                           "expected copy or splice, got \"zerocopy\""));
    EXPECT_TRUE(fails_with(listener_with("    relay: true\n"), 6, "listeners[0].relay",
                           "expected copy or splice, got \"true\""));
}

TEST(config_errors, first_error_wins) {
    // Two mistakes: the one met first is reported, nothing is collected.
    EXPECT_TRUE(fails_with("workers: x\ndrain_timeout: y\n", 1, "workers", "expected an integer"));
}


TEST(config_errors, admin_token_too_short) {
    EXPECT_TRUE(fails_with("admin:\n  address: 127.0.0.1:9901\n  token: short\n" + listener_with(""), 3, "admin.token",
                           "a token must have at least 16 characters"));
}


TEST(config_errors, forward_listener_mistakes) {
    const std::string head = "listeners:\n  - name: p\n    bind: 127.0.0.1:3128\n";
    EXPECT_TRUE(fails_with(head + "    mode: http\n", 4, "listeners[0].mode",
                           "expected reverse, connect or socks5, got \"http\""));
    EXPECT_TRUE(fails_with(head + "    mode: connect\n    upstream: {address: 127.0.0.1:80}\n", 5,
                           "listeners[0].upstream", "has no upstream"));
    EXPECT_TRUE(fails_with(head + "    upstream: {address: 127.0.0.1:80}\n    acl: []\n", 5, "listeners[0].acl",
                           "acl applies to mode connect or socks5 only"));
    EXPECT_TRUE(fails_with(head + "    mode: connect\n    acl:\n      - {allow: 10.0.0.1/8}\n", 6, "listeners[0].acl[0]",
                           ""));
    EXPECT_TRUE(fails_with(head + "    mode: connect\n    acl:\n      - {allow: any, deny: any}\n", 6,
                           "listeners[0].acl[0]", "exactly one of allow or deny"));
    EXPECT_TRUE(fails_with(head + "    mode: connect\n    acl:\n      - {allow: any, ports: \"0-5\"}\n", 6,
                           "listeners[0].acl[0]", ""));
}

}  // namespace
}  // namespace halfpipe::config
