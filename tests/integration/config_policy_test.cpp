// Close policies chosen in the config file: `linger` (how halfpipe ends a
// connection it ends itself) and `upstream.connect_failure`.
#include <gtest/gtest.h>

#include <future>

#include "test_util.hpp"

namespace it {
namespace {

std::string config_with(const std::string& upstream_address, const std::string& listener_extra,
                        const std::string& upstream_extra = "") {
    return "workers: 1\n"
           "drain_timeout: 1s\n"
           "admin: off\n"
           "listeners:\n"
           "  - name: policy\n"
           "    bind: 127.0.0.1:0\n"
           "    upstream:\n"
           "      address: " +
           upstream_address + "\n" + upstream_extra + listener_extra;
}

TEST(ConfigPolicy, LingerFinEndsIdleConnectionWithFinBothWays) {
    upstream server;
    temp_dir dir;
    const auto file = dir.write("fin.yaml", config_with(server.address(),
                                                        "    linger: fin\n"
                                                        "    timeouts:\n"
                                                        "      idle: 1s\n"));
    halfpipe proxy({"--config", file.string()}, {});
    proxy.wait_listening();
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    const auto t0 = p.connected;

    auto client_end = std::async(std::launch::async, [&] { return read_until_end(p.client.get(), t0 + 4s); });
    auto u = read_until_end(p.up.get(), t0 + 4s);
    auto c = client_end.get();
    EXPECT_EQ(c.end, read_end::eof) << "client: " << to_string(c.end) << log_of(proxy);
    EXPECT_EQ(u.end, read_end::eof) << "upstream: " << to_string(u.end) << log_of(proxy);
    EXPECT_ELAPSED_BETWEEN(t0, c.when, 1s - kEarly, 1s + kLate);

    auto entry = proxy.next_access(3s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("listener"), "policy") << entry->line;
    EXPECT_EQ(entry->get("how"), "timeout") << entry->line;
    EXPECT_EQ(entry->get("reason"), "idle_timeout") << entry->line;
}

TEST(ConfigPolicy, ConnectFailureCloseGivesClientEof) {
    const std::uint16_t dead_port = unused_port();
    temp_dir dir;
    const auto file = dir.write("close.yaml", config_with("127.0.0.1:" + std::to_string(dead_port), "",
                                                          "      connect_failure: close\n"));
    halfpipe proxy({"--config", file.string()}, {});
    proxy.wait_listening();
    const auto t0 = clock::now();
    socket_fd client = proxy.connect();
    ASSERT_TRUE(client) << log_of(proxy);
    auto r = read_until_end(client.get(), t0 + 3s);
    EXPECT_EQ(r.end, read_end::eof) << to_string(r.end) << log_of(proxy);
    EXPECT_LT(r.when - t0, 1s);

    auto entry = proxy.next_access(3s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("how"), "error") << entry->line;
    EXPECT_EQ(entry->get("reason"), "connect_refused") << entry->line;
}

}  // namespace
}  // namespace it
