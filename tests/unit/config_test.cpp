// load_string / load_file on valid input: every key, the defaults, and the example file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "config/config.hpp"

namespace halfpipe::config {
namespace {

unsigned cores() {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : std::min(n, 1024u);
}

listener_config default_listener(std::string name, std::vector<host_port> bind, host_port upstream) {
    listener_config listener;
    listener.name = std::move(name);
    listener.bind = std::move(bind);
    listener.upstream.address = std::move(upstream);
    return listener;
}

TEST(load_string, minimal_config_takes_every_default) {
    const auto c = load_string(R"(
listeners:
  - name: web
    bind: 127.0.0.1:8080
    upstream:
      address: 127.0.0.1:9000
)");
    EXPECT_EQ(c.workers, cores());
    EXPECT_EQ(c.drain_timeout, 30s);
    EXPECT_TRUE(c.access_log);
    EXPECT_EQ(c.admin, (host_port{"127.0.0.1", 9901}));
    ASSERT_EQ(c.listeners.size(), 1u);
    const auto& l = c.listeners[0];
    EXPECT_EQ(l, default_listener("web", {{"127.0.0.1", 8080}}, {"127.0.0.1", 9000}));
    // Spelled out too, so a changed default in the header is a visible decision.
    EXPECT_EQ(l.upstream.source_address, std::nullopt);
    EXPECT_EQ(l.upstream.connect_failure, close_kind::abortive_rst);
    EXPECT_EQ(l.timeouts.connect, 5s);
    EXPECT_EQ(l.timeouts.idle, duration{1h});
    EXPECT_EQ(l.timeouts.half_close, duration{60s});
    EXPECT_EQ(l.timeouts.max_lifetime, std::nullopt);
    EXPECT_EQ(l.timeouts.rst_flush, 1s);
    EXPECT_EQ(l.timeouts.lingering_close, duration{2s});
    EXPECT_EQ(l.buffer_size, 64u * 1024);
    EXPECT_EQ(l.relay, relay_mode::copy);
    EXPECT_EQ(l.max_connections, std::nullopt);
    EXPECT_EQ(l.backlog, 4096);
    EXPECT_TRUE(l.tcp_nodelay);
    EXPECT_EQ(l.keepalive, std::nullopt);
    EXPECT_EQ(l.linger, close_kind::abortive_rst);
}

TEST(load_string, every_key_parsed) {
    const auto c = load_string(R"(
workers: 3
drain_timeout: 2m30s
access_log: false
admin:
  address: "[::1]:9999"
listeners:
  - name: web.v2_a-b
    bind: [127.0.0.1:8080, "[::1]:8080"]
    upstream:
      address: backend.local:9000
      source_address: 10.0.0.2
      connect_failure: close
    timeouts:
      connect: 250ms
      idle: 10m
      half_close: off
      max_lifetime: 24h
      rst_flush: 1500ms
    buffer_size: 1MiB
    relay: splice
    max_connections: 500
    backlog: 128
    tcp_nodelay: false
    keepalive: {idle: 30s, interval: 5s, probes: 3}
    linger: fin
)");
    config expected;
    expected.workers = 3;
    expected.drain_timeout = 150s;
    expected.access_log = false;
    expected.admin = host_port{"::1", 9999};
    listener_config l;
    l.name = "web.v2_a-b";
    l.bind = {{"127.0.0.1", 8080}, {"::1", 8080}};
    l.upstream = {{"backend.local", 9000}, "10.0.0.2", close_kind::immediate};
    l.timeouts = {250ms, 10min, std::nullopt, 24h, 1500ms};
    l.buffer_size = 1 << 20;
    l.relay = relay_mode::splice;
    l.max_connections = 500;
    l.backlog = 128;
    l.tcp_nodelay = false;
    l.keepalive = keepalive_config{30s, 5s, 3};
    l.linger = close_kind::graceful_fin;
    expected.listeners.push_back(l);
    EXPECT_EQ(c, expected);
}

TEST(load_string, several_listeners_keep_their_order) {
    const auto c = load_string(R"(
listeners:
  - name: a
    bind: 127.0.0.1:1001
    upstream: {address: 127.0.0.1:2001}
  - name: b
    bind: 127.0.0.1:1002
    upstream: {address: 127.0.0.1:2002}
    linger: close
    relay: copy
)");
    ASSERT_EQ(c.listeners.size(), 2u);
    EXPECT_EQ(c.listeners[0].name, "a");
    EXPECT_EQ(c.listeners[1].name, "b");
    EXPECT_EQ(c.listeners[1].linger, close_kind::immediate);
    EXPECT_EQ(c.listeners[1].relay, relay_mode::copy);
    EXPECT_EQ(c.listeners[1].upstream.address, (host_port{"127.0.0.1", 2002}));
}

TEST(load_string, ipv6_bind_addresses) {
    const auto c = load_string(R"(
listeners:
  - name: v6
    bind:
      - "[::1]:8080"
      - "[::]:0"
      - "[2001:db8::5]:443"
      - '[::ffff:127.0.0.1]:8081'
    upstream:
      address: "[::1]:9000"
      source_address: "::1"
)");
    const auto& l = c.listeners.at(0);
    const std::vector<host_port> expected{{"::1", 8080}, {"::", 0}, {"2001:db8::5", 443}, {"::ffff:127.0.0.1", 8081}};
    EXPECT_EQ(l.bind, expected);
    EXPECT_EQ(l.upstream.address, (host_port{"::1", 9000}));
    EXPECT_EQ(l.upstream.source_address, "::1");
}

TEST(load_string, bind_port_zero_may_repeat) {
    // The kernel picks a distinct port for each, which is what tests rely on.
    const auto c = load_string(R"(
admin: {address: 127.0.0.1:0}
listeners:
  - name: a
    bind: [127.0.0.1:0, 127.0.0.1:0]
    upstream: {address: 127.0.0.1:9000}
  - name: b
    bind: [0.0.0.0:0]
    upstream: {address: 127.0.0.1:9000}
)");
    EXPECT_EQ(c.listeners[0].bind.size(), 2u);
    EXPECT_EQ(c.admin, (host_port{"127.0.0.1", 0}));
}

TEST(load_string, same_port_on_different_addresses_or_families) {
    const auto c = load_string(R"(
listeners:
  - name: a
    bind: [127.0.0.1:8080, "[::1]:8080"]
    upstream: {address: 127.0.0.1:9000}
  - name: b
    bind: [127.0.0.2:8080, 0.0.0.0:8081, "[::]:8081"]
    upstream: {address: 127.0.0.1:9000}
)");
    EXPECT_EQ(c.listeners.size(), 2u);
}

TEST(load_string, wildcard_and_specific_address_may_share_a_port) {
    // SO_REUSEPORT lets both bind; the kernel prefers the specific address.
    const auto c = load_string(R"(
listeners:
  - {name: all, bind: [0.0.0.0:80, "[::]:80"], upstream: {address: h:1}}
  - {name: local, bind: [127.0.0.1:80, "[::1]:80"], upstream: {address: h:2}}
)");
    EXPECT_EQ(c.listeners.size(), 2u);
}

TEST(load_string, admin_off) {
    const auto c = load_string(R"(
admin: off
listeners:
  - {name: web, bind: 127.0.0.1:9901, upstream: {address: 127.0.0.1:9000}}
)");
    EXPECT_EQ(c.admin, std::nullopt);
}

TEST(load_string, off_values) {
    const auto c = load_string(R"(
listeners:
  - name: web
    bind: 127.0.0.1:8080
    upstream: {address: 127.0.0.1:9000}
    timeouts: {idle: off, half_close: off, max_lifetime: off, lingering_close: off}
    max_connections: off
    keepalive: off
)");
    const auto& l = c.listeners[0];
    EXPECT_EQ(l.timeouts.lingering_close, std::nullopt);
    EXPECT_EQ(l.timeouts.idle, std::nullopt);
    EXPECT_EQ(l.timeouts.half_close, std::nullopt);
    EXPECT_EQ(l.timeouts.max_lifetime, std::nullopt);
    EXPECT_EQ(l.max_connections, std::nullopt);
    EXPECT_EQ(l.keepalive, std::nullopt);
}

TEST(load_string, partial_maps_keep_the_other_defaults) {
    const auto c = load_string(R"(
listeners:
  - name: web
    bind: 127.0.0.1:8080
    upstream: {address: 127.0.0.1:9000}
    timeouts: {idle: 5m}
    keepalive: {probes: 2}
)");
    const auto& l = c.listeners[0];
    timeouts_config timeouts;
    timeouts.idle = 5min;
    EXPECT_EQ(l.timeouts, timeouts);
    EXPECT_EQ(l.keepalive, (keepalive_config{60s, 10s, 2}));
    EXPECT_EQ(load_string(R"(
listeners:
  - {name: w, bind: 127.0.0.1:1, upstream: {address: h:1}, keepalive: {}, timeouts: {}}
)")
                  .listeners[0]
                  .keepalive,
              keepalive_config{});
}

TEST(load_string, workers) {
    const auto load_workers = [](const std::string& value) {
        return load_string("workers: " + value +
                           "\nlisteners: [{name: w, bind: 127.0.0.1:1, upstream: {address: h:1}}]")
            .workers;
    };
    EXPECT_EQ(load_workers("1"), 1u);
    EXPECT_EQ(load_workers("1024"), 1024u);
    EXPECT_EQ(load_workers("0"), cores());
    EXPECT_GE(load_workers("0"), 1u);
}

TEST(load_string, resolve_timeout) {
    const auto load_timeout = [](const std::string& line) {
        return load_string(line + "listeners: [{name: w, bind: 127.0.0.1:1, upstream: {address: h:1}}]")
            .resolve_timeout;
    };
    EXPECT_EQ(load_timeout(""), std::optional<duration>(5s));
    EXPECT_EQ(load_timeout("resolve_timeout: 2s500ms\n"), std::optional<duration>(2500ms));
    EXPECT_EQ(load_timeout("resolve_timeout: off\n"), std::nullopt);
}

TEST(load_string, cpu_affinity) {
    const auto load_affinity = [](const std::string& line) {
        return load_string(line + "listeners: [{name: w, bind: 127.0.0.1:1, upstream: {address: h:1}}]").cpu_affinity;
    };
    EXPECT_EQ(load_affinity(""), cpu_affinity::off);
    EXPECT_EQ(load_affinity("cpu_affinity: off\n"), cpu_affinity::off);
    EXPECT_EQ(load_affinity("cpu_affinity: spread\n"), cpu_affinity::spread);
    try {
        load_affinity("workers: 2\ncpu_affinity: auto\n");
        ADD_FAILURE() << "cpu_affinity: auto was accepted";
    } catch (const config_error& e) {
        EXPECT_EQ(std::string(e.what()), "<string>:2: cpu_affinity: expected off or spread, got \"auto\"");
    }
}

TEST(load_string, booleans) {
    const auto access_log = [](const std::string& value) {
        return load_string("access_log: " + value +
                           "\nlisteners: [{name: w, bind: 127.0.0.1:1, upstream: {address: h:1}}]")
            .access_log;
    };
    for (const char* yes : {"true", "True", "TRUE", "on", "\"true\""}) EXPECT_TRUE(access_log(yes)) << yes;
    for (const char* no : {"false", "False", "FALSE", "off"}) EXPECT_FALSE(access_log(no)) << no;
}

TEST(load_string, limits_are_inclusive) {
    const auto c = load_string(R"(
listeners:
  - name: lo
    bind: 127.0.0.1:1
    upstream: {address: h:65535}
    buffer_size: 1KiB
    backlog: 1
    max_connections: 1
    keepalive: {idle: 1s, interval: 32767s, probes: 1}
    timeouts: {connect: 1ms, rst_flush: 1ms}
  - name: hi
    bind: 127.0.0.1:2
    upstream: {address: h:1}
    buffer_size: 16777216
    backlog: 65535
    keepalive: {idle: 9h6m7s, probes: 127}
)");
    EXPECT_EQ(c.listeners[0].buffer_size, 1024u);
    EXPECT_EQ(c.listeners[0].keepalive, (keepalive_config{1s, 32767s, 1}));
    EXPECT_EQ(c.listeners[0].timeouts.connect, 1ms);
    EXPECT_EQ(c.listeners[1].buffer_size, 16u << 20);
    EXPECT_EQ(c.listeners[1].backlog, 65535);
    EXPECT_EQ(c.listeners[1].keepalive->idle, 32767s);
}

TEST(load_string, yaml_features_are_transparent) {
    // Anchors, comments, quoting styles and flow maps mean nothing special to the schema.
    const auto c = load_string(R"(# leading comment
listeners:
  - name: 'a'   # single-quoted
    bind: "127.0.0.1:1001"
    upstream: &up
      address: backend:9000
      connect_failure: close
  - name: b
    bind: 127.0.0.1:1002
    upstream: *up
)");
    EXPECT_EQ(c.listeners[0].upstream, c.listeners[1].upstream);
    EXPECT_EQ(c.listeners[1].upstream.connect_failure, close_kind::immediate);
}

TEST(load_string, document_markers_and_line_endings) {
    const std::string body = "listeners: [{name: a, bind: 127.0.0.1:1, upstream: {address: h:1}}]\n";
    EXPECT_NO_THROW(load_string("---\n" + body));
    EXPECT_NO_THROW(load_string("%YAML 1.2\n---\n" + body + "...\n"));
    EXPECT_NO_THROW(load_string(body + "---\n"));  // a stray trailing marker adds only an empty document
    EXPECT_NO_THROW(load_string("workers: 1\r\n" + body));
}

TEST(load_file, example_file_loads) {
    const auto c = load_file(HALFPIPE_EXAMPLE_CONFIG);
    EXPECT_EQ(c.admin, (host_port{"127.0.0.1", 9901}));
    ASSERT_EQ(c.listeners.size(), 3u);
    const auto& web = c.listeners[0];
    EXPECT_EQ(web.name, "web");
    EXPECT_EQ(web.bind, (std::vector<host_port>{{"127.0.0.1", 8080}, {"::1", 8080}}));
    EXPECT_EQ(web.upstream.address, (host_port{"backend.local", 9000}));
    EXPECT_EQ(web.upstream.source_address, "127.0.0.1");
    EXPECT_EQ(web.max_connections, 10000u);
    EXPECT_EQ(web.keepalive, keepalive_config{});
    // Apart from what it sets to show the form, the example states the defaults.
    auto as_defaults = web;
    as_defaults.bind = {{"127.0.0.1", 8080}};
    as_defaults.upstream.source_address.reset();
    as_defaults.max_connections.reset();
    as_defaults.keepalive.reset();
    EXPECT_EQ(as_defaults, default_listener("web", {{"127.0.0.1", 8080}}, {"backend.local", 9000}));
    EXPECT_EQ(c.listeners[1], default_listener("db", {{"0.0.0.0", 15432}}, {"10.0.0.5", 5432}));
    const auto& egress = c.listeners[2];
    EXPECT_EQ(egress.mode, listener_mode::connect);
    EXPECT_EQ(egress.acl.size(), 3u);
    EXPECT_EQ(egress.upstream, upstream_config{});
    EXPECT_EQ(c.drain_timeout, config{}.drain_timeout);
    EXPECT_EQ(c.access_log, config{}.access_log);
}

class temp_file {
public:
    explicit temp_file(const std::string& text) {
        char name[] = "/tmp/halfpipe_config_test_XXXXXX.yaml";
        const int fd = ::mkstemps(name, 5);
        if (fd < 0) throw std::runtime_error("mkstemps failed");
        ::close(fd);
        path_ = name;
        std::ofstream(path_) << text;
    }
    ~temp_file() { std::remove(path_.c_str()); }
    temp_file(const temp_file&) = delete;
    temp_file& operator=(const temp_file&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

TEST(load_file, errors_name_the_file) {
    const temp_file file("listeners:\n  - name: web\n    bind: nowhere\n");
    try {
        load_file(file.path());
        FAIL() << "no config_error";
    } catch (const config_error& e) {
        EXPECT_EQ(std::string(e.what()).rfind(file.path() + ":3: listeners[0].bind: ", 0), 0u) << e.what();
    }
}

TEST(load_file, missing_file) {
    try {
        load_file("/nonexistent/halfpipe.yaml");
        FAIL() << "no config_error";
    } catch (const config_error& e) {
        EXPECT_EQ(std::string(e.what()), "/nonexistent/halfpipe.yaml: cannot open: No such file or directory");
    }
}

TEST(load_file, directory) {
    try {
        load_file("/tmp");
        FAIL() << "no config_error";
    } catch (const config_error& e) {
        EXPECT_EQ(std::string(e.what()), "/tmp: cannot read: is a directory");
    }
}

TEST(load_file, valid_file) {
    const temp_file file("listeners: [{name: f, bind: '[::1]:0', upstream: {address: 'localhost:80'}}]\n");
    EXPECT_EQ(load_file(file.path()).listeners.at(0).bind.at(0), (host_port{"::1", 0}));
}


TEST(load_string, admin_token) {
    const auto c = load_string(R"(
admin: {address: 127.0.0.1:9901, token: 0123456789abcdef-secret}
listeners:
  - {name: web, bind: 127.0.0.1:8080, upstream: {address: 127.0.0.1:9000}}
)");
    EXPECT_EQ(c.admin_token, "0123456789abcdef-secret");
    const auto without = load_string("listeners:\n  - {name: web, bind: 127.0.0.1:8080, upstream: {address: h:1}}\n");
    EXPECT_EQ(without.admin_token, std::nullopt);
}


TEST(load_string, forward_listener_with_acl) {
    const auto c = load_string(R"(
listeners:
  - name: egress
    mode: socks5
    bind: 127.0.0.1:1080
    timeouts: {handshake: 2s, lingering_close: 500ms}
    acl:
      - {deny: 10.0.0.0/8}
      - {allow: any, host: "*.example.org", ports: "443"}
      - {allow: "::1/128"}
)");
    const auto& l = c.listeners.at(0);
    EXPECT_EQ(l.mode, listener_mode::socks5);
    EXPECT_EQ(l.timeouts.handshake, 2s);
    EXPECT_EQ(l.timeouts.lingering_close, duration{500ms});
    ASSERT_EQ(l.acl.size(), 3u);
    EXPECT_EQ(l.acl[0], (acl_rule{false, "10.0.0.0/8", std::nullopt, std::nullopt}));
    EXPECT_EQ(l.acl[1], (acl_rule{true, std::nullopt, "*.example.org", "443"}));
    EXPECT_EQ(l.acl[2], (acl_rule{true, "::1/128", std::nullopt, std::nullopt}));
}

TEST(load_string, forward_listener_defaults_to_loopback_acl) {
    const auto c = load_string("listeners:\n  - {name: p, mode: connect, bind: 127.0.0.1:3128}\n");
    EXPECT_EQ(c.listeners.at(0).mode, listener_mode::connect);
    EXPECT_TRUE(c.listeners.at(0).acl.empty());  // the server reads empty as loopback only
}

TEST(quick_forward_config, builds_one_forward_listener) {
    const auto c = quick_forward_config("127.0.0.1:0", listener_mode::connect);
    ASSERT_EQ(c.listeners.size(), 1u);
    EXPECT_EQ(c.listeners[0].mode, listener_mode::connect);
    EXPECT_THROW(quick_forward_config("localhost:1", listener_mode::socks5), config_error);
}

}  // namespace
}  // namespace halfpipe::config
