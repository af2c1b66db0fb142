// Contract 11: one access log line per connection, with every field and the right
// byte counts, initiator and close kind.
#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <thread>

#include "test_util.hpp"

namespace it {
namespace {

TEST(AccessLog, LineHasAllFieldsWithRightValues) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    const auto t0 = clock::now();
    ASSERT_TRUE(round_trip(p.client.get(), p.up.get(), random_bytes(1000, 51), random_bytes(2345, 52)));
    std::this_thread::sleep_for(250ms);
    ASSERT_TRUE(round_trip(p.client.get(), p.up.get(), random_bytes(7, 53), ""));
    shutdown_write(p.client.get());
    ASSERT_EQ(read_until_end(p.up.get(), clock::now() + 2s).end, read_end::eof);
    p.up.reset();
    ASSERT_EQ(read_until_end(p.client.get(), clock::now() + 2s).end, read_end::eof);
    const auto t1 = clock::now();

    auto entry = proxy.next_access(3s);
    ASSERT_TRUE(entry) << log_of(proxy);
    for (const char* key : {"listener", "conn", "client", "upstream", "duration_ms", "bytes_to_upstream",
                            "bytes_to_client", "initiator", "how", "reason"}) {
        EXPECT_TRUE(entry->has(key)) << "missing " << key << " in: " << entry->line;
    }
    EXPECT_EQ(entry->get("listener"), "default") << entry->line;
    EXPECT_FALSE(entry->get("conn").empty()) << entry->line;
    EXPECT_EQ(entry->get("client"), "127.0.0.1:" + std::to_string(p.client_port)) << entry->line;
    EXPECT_EQ(entry->get("upstream"), server.address()) << entry->line;
    EXPECT_EQ(entry->number("bytes_to_upstream"), 1007) << entry->line;
    EXPECT_EQ(entry->number("bytes_to_client"), 2345) << entry->line;
    EXPECT_GE(entry->number("duration_ms"), 250) << entry->line;
    EXPECT_LE(entry->number("duration_ms"), ms(t1 - t0) + 1000) << entry->line;
    EXPECT_EQ(entry->get("initiator"), "client") << entry->line;
    EXPECT_EQ(entry->get("how"), "fin") << entry->line;
    EXPECT_TRUE(std::regex_match(entry->get("reason"), std::regex("[a-z][a-z0-9_]*"))) << entry->line;
    // The line is one logfmt record: ts/level may come first, event=access is in it.
    EXPECT_TRUE(std::regex_search(entry->line, std::regex(R"((^|\s)event=access(\s|$))"))) << entry->line;

    EXPECT_FALSE(proxy.next_access(300ms)) << "a second access line for one connection";
}

TEST(AccessLog, OneLinePerConnectionWithDistinctIds) {
    upstream server("127.0.0.1", upstream::echo());
    halfpipe proxy({.upstream = server.address()});
    std::set<std::uint16_t> ports;
    for (int i = 0; i < 5; ++i) {
        socket_fd c = proxy.connect();
        ASSERT_TRUE(c) << log_of(proxy);
        ports.insert(local_port(c.get()));
        const std::string msg(100 * (i + 1), 'a' + i);
        ASSERT_TRUE(write_all_ok(c.get(), msg));
        ASSERT_EQ(read_exact(c.get(), msg.size(), clock::now() + 2s).data, msg);
        shutdown_write(c.get());
        ASSERT_EQ(read_until_end(c.get(), clock::now() + 2s).end, read_end::eof);
    }
    std::set<std::string> ids;
    for (int i = 0; i < 5; ++i) {
        auto entry = proxy.next_access(3s);
        ASSERT_TRUE(entry) << "access line " << i << log_of(proxy);
        ids.insert(entry->get("conn"));
        const auto client = entry->get("client");
        const auto port = static_cast<std::uint16_t>(std::stoul(client.substr(client.rfind(':') + 1)));
        EXPECT_TRUE(ports.count(port)) << entry->line;
        EXPECT_EQ(entry->number("bytes_to_upstream"), entry->number("bytes_to_client")) << entry->line;
    }
    EXPECT_EQ(ids.size(), 5u) << "conn ids are not distinct" << log_of(proxy);
    EXPECT_FALSE(proxy.next_access(300ms)) << "more access lines than connections" << log_of(proxy);
}

TEST(AccessLog, UpstreamFinIsAttributedToUpstream) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    ASSERT_TRUE(write_all_ok(p.up.get(), "bye"));
    p.up.reset();  // plain close with nothing unread: a FIN
    auto r = read_until_end(p.client.get(), clock::now() + 2s);
    EXPECT_EQ(r.data, "bye");
    EXPECT_EQ(r.end, read_end::eof) << to_string(r.end);
    p.client.reset();
    auto entry = proxy.next_access(3s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("initiator"), "upstream") << entry->line;
    EXPECT_EQ(entry->get("how"), "fin") << entry->line;
    EXPECT_EQ(entry->number("bytes_to_client"), 3) << entry->line;
    EXPECT_EQ(entry->number("bytes_to_upstream"), 0) << entry->line;
}

}  // namespace
}  // namespace it
