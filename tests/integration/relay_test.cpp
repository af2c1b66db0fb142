// Contract 1: bytes arrive intact and in order, both ways at once; IPv6 relays too.
#include <gtest/gtest.h>

#include <future>

#include "test_util.hpp"

namespace it {
namespace {

constexpr std::size_t kBulk = 8 * 1024 * 1024;

void bulk_both_ways(const std::string& host) {
    upstream server(host);
    halfpipe proxy({.listen = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":0",
                    .upstream = server.address()});
    const std::string to_up = random_bytes(kBulk, 1);
    const std::string to_client = random_bytes(kBulk, 2);

    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    const auto deadline = clock::now() + 40s;

    // The upstream writes its 8 MiB while reading the client's 8 MiB, then waits for
    // the client's FIN and answers with its own.
    auto upstream_side = std::async(std::launch::async, [&] {
        auto x = exchange(p.up.get(), to_client, to_up.size(), deadline);
        auto tail = read_until_end(p.up.get(), deadline);
        shutdown_write(p.up.get());
        return std::make_pair(std::move(x), std::move(tail));
    });
    auto x = exchange(p.client.get(), to_up, to_client.size(), deadline);
    shutdown_write(p.client.get());
    auto client_tail = read_until_end(p.client.get(), deadline);
    auto [ux, utail] = upstream_side.get();

    EXPECT_EQ(x.written, to_up.size()) << "client write error " << x.write_err;
    EXPECT_EQ(ux.written, to_client.size()) << "upstream write error " << ux.write_err;
    EXPECT_EQ(x.read.end, read_end::data) << to_string(x.read.end);
    EXPECT_EQ(ux.read.end, read_end::data) << to_string(ux.read.end);
    EXPECT_EQ(describe_difference(to_client, x.read.data), "") << "upstream→client bytes differ";
    EXPECT_EQ(describe_difference(to_up, ux.read.data), "") << "client→upstream bytes differ";
    // No extra bytes after the payload, and a clean FIN each way.
    EXPECT_EQ(utail.end, read_end::eof) << to_string(utail.end);
    EXPECT_EQ(utail.data.size(), 0u);
    EXPECT_EQ(client_tail.end, read_end::eof) << to_string(client_tail.end);
    EXPECT_EQ(client_tail.data.size(), 0u);

    auto entry = proxy.next_access(5s);
    ASSERT_TRUE(entry) << "no access log line" << log_of(proxy);
    EXPECT_EQ(entry->number("bytes_to_upstream"), static_cast<long long>(kBulk)) << entry->line;
    EXPECT_EQ(entry->number("bytes_to_client"), static_cast<long long>(kBulk)) << entry->line;
    EXPECT_EQ(entry->get("how"), "fin") << entry->line;
}

TEST(Relay, EightMiBEachWayConcurrentlyIntactAndInOrder) { bulk_both_ways("127.0.0.1"); }

TEST(Relay, IPv6LoopbackRelays) {
    if (!ipv6_loopback_available()) GTEST_SKIP() << "no IPv6 loopback here";
    upstream server("::1");
    halfpipe proxy({.listen = "[::1]:0", .upstream = server.address()});
    EXPECT_EQ(proxy.listen_host(), "::1") << proxy.listen_addresses().at(0);
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    EXPECT_TRUE(round_trip(p.client.get(), p.up.get(), random_bytes(100000, 3), random_bytes(200000, 4)))
        << log_of(proxy);
    shutdown_write(p.client.get());
    EXPECT_EQ(read_until_end(p.up.get(), clock::now() + 3s).end, read_end::eof);
    p.up.reset();
    EXPECT_EQ(read_until_end(p.client.get(), clock::now() + 3s).end, read_end::eof);
    auto entry = proxy.next_access(5s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("client").rfind("[::1]:", 0), 0u) << entry->line;
    EXPECT_EQ(entry->get("upstream"), server.address()) << entry->line;
}

TEST(Relay, IPv6BulkBothWays) {
    if (!ipv6_loopback_available()) GTEST_SKIP() << "no IPv6 loopback here";
    bulk_both_ways("::1");
}

TEST(Relay, ManySmallWritesKeepOrder) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    // 2000 numbered small messages each way, interleaved with reads on the other side.
    std::string sent_up, sent_down;
    for (int i = 0; i < 2000; ++i) {
        const std::string a = "c" + std::to_string(i) + ";";
        const std::string b = "u" + std::to_string(i) + ";";
        ASSERT_TRUE(write_all_ok(p.client.get(), a));
        ASSERT_TRUE(write_all_ok(p.up.get(), b));
        sent_up += a;
        sent_down += b;
    }
    auto up_read = read_exact(p.up.get(), sent_up.size(), clock::now() + 5s);
    auto client_read = read_exact(p.client.get(), sent_down.size(), clock::now() + 5s);
    EXPECT_EQ(describe_difference(sent_up, up_read.data), "");
    EXPECT_EQ(describe_difference(sent_down, client_read.data), "");
}

}  // namespace
}  // namespace it
