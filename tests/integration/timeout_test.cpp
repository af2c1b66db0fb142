// Contract 7: the idle timer ends a connection with no byte either way; any byte
// in either direction restarts it.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "test_util.hpp"

namespace it {
namespace {

TEST(IdleTimeout, SilentConnectionIsResetOnBothSides) {
    upstream server;
    halfpipe proxy({.upstream = server.address(), .extra = {"--idle-timeout", "1s"}});
    const std::size_t baseline = count_socket_fds(proxy.pid());
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    const auto t0 = p.connected;

    auto client_end = std::async(std::launch::async, [&] { return read_until_end(p.client.get(), t0 + 4s); });
    auto u = read_until_end(p.up.get(), t0 + 4s);
    auto c = client_end.get();

    EXPECT_EQ(c.end, read_end::reset) << "client: " << to_string(c.end) << log_of(proxy);
    EXPECT_EQ(u.end, read_end::reset) << "upstream: " << to_string(u.end) << log_of(proxy);
    EXPECT_ELAPSED_BETWEEN(t0, c.when, 1s - kEarly, 1s + kLate);
    EXPECT_ELAPSED_BETWEEN(t0, u.when, 1s - kEarly, 1s + kLate);

    auto entry = proxy.next_access(3s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("initiator"), "proxy") << entry->line;
    EXPECT_EQ(entry->get("how"), "timeout") << entry->line;
    EXPECT_EQ(entry->get("reason"), "idle_timeout") << entry->line;
    EXPECT_EQ(wait_socket_fds_at_most(proxy.pid(), baseline, 3s), baseline)
        << "halfpipe still holds sockets of the timed-out connection";
}

// A byte every 300 ms in one direction only keeps the whole connection alive past
// twice the timeout; once the bytes stop, the timer fires one timeout later.
void keepalive_by_traffic(bool client_to_upstream) {
    upstream server;
    halfpipe proxy({.upstream = server.address(), .extra = {"--idle-timeout", "1s"}});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    const int from = client_to_upstream ? p.client.get() : p.up.get();
    const int to = client_to_upstream ? p.up.get() : p.client.get();
    const auto t0 = p.connected;

    for (int i = 0; i < 8; ++i) {  // 2.4 s
        std::this_thread::sleep_for(300ms);
        ASSERT_TRUE(write_all_ok(from, "x", 1s)) << "write " << i << " failed at " << ms(clock::now() - t0) << " ms"
                                                 << log_of(proxy);
        auto r = read_exact(to, 1, clock::now() + 1s);
        ASSERT_EQ(r.end, read_end::data) << "byte " << i << " at " << ms(clock::now() - t0) << " ms: "
                                         << to_string(r.end) << log_of(proxy);
    }
    // Still alive in the other direction as well.
    EXPECT_TRUE(round_trip(p.client.get(), p.up.get(), "still", "here", 1s)) << log_of(proxy);

    const auto t_last = clock::now();
    auto client_end = std::async(std::launch::async, [&] { return read_until_end(p.client.get(), t_last + 4s); });
    auto u = read_until_end(p.up.get(), t_last + 4s);
    auto c = client_end.get();
    EXPECT_EQ(c.end, read_end::reset) << to_string(c.end) << log_of(proxy);
    EXPECT_EQ(u.end, read_end::reset) << to_string(u.end) << log_of(proxy);
    EXPECT_ELAPSED_BETWEEN(t_last, c.when, 1s - kEarly, 1s + kLate);
}

TEST(IdleTimeout, ClientToUpstreamTrafficKeepsConnectionAlive) { keepalive_by_traffic(true); }
TEST(IdleTimeout, UpstreamToClientTrafficKeepsConnectionAlive) { keepalive_by_traffic(false); }

}  // namespace
}  // namespace it
