// Contract 1 on connections that carry many exchanges: after a few, halfpipe has
// epoll report each peer's FIN apart from its bytes (EPOLLRDHUP), and stops reading
// on to EAGAIN after a short read. A FIN or a reset right behind the last bytes
// must still be passed on at once.
#include <gtest/gtest.h>

#include <netinet/tcp.h>
#include <sys/epoll.h>

#include <thread>

#include "test_util.hpp"

namespace it {
namespace {

// halfpipe's two sockets of one relayed connection, by their ports.
struct relay_sockets {
    std::uint16_t client_side_local, client_side_remote;      // halfpipe's accepted socket
    std::uint16_t upstream_side_local, upstream_side_remote;  // halfpipe's socket toward the upstream
};

relay_sockets sockets_of(const halfpipe& proxy, const relay_pair& p) {
    return {proxy.port(), p.client_port, peer_port(p.up.get()), local_port(p.up.get())};
}

// How many of halfpipe's two sockets are watched with EPOLLRDHUP (nullopt: one is
// not watched at all).
std::optional<int> sockets_reporting_fin(const halfpipe& proxy, const relay_sockets& r) {
    const auto client_side = epoll_events_of(proxy.pid(), r.client_side_local, r.client_side_remote);
    const auto upstream_side = epoll_events_of(proxy.pid(), r.upstream_side_local, r.upstream_side_remote);
    if (!client_side || !upstream_side) return std::nullopt;
    return int{(*client_side & EPOLLRDHUP) != 0} + int{(*upstream_side & EPOLLRDHUP) != 0};
}

// Small writes leave at once, not held back for the ACK of the one before (Nagle):
// an abortive close would discard them unsent.
void no_delay(const relay_pair& p) {
    const int on = 1;
    for (int fd : {p.client.get(), p.up.get()}) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

::testing::AssertionResult exchanges(relay_pair& p, int n) {
    for (int i = 0; i < n; ++i) {
        auto r = round_trip(p.client.get(), p.up.get(), "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\nok");
        if (!r) return r << " (exchange " << i + 1 << ")";
    }
    return ::testing::AssertionSuccess();
}

// A connection past the exchanges that have halfpipe report each FIN apart, small
// writes leaving at once, and halfpipe asleep again when the next bytes come.
::testing::AssertionResult kept_alive_pair(halfpipe& proxy, upstream& server, relay_pair& p) {
    if (auto connected = connect_pair(proxy, server, p); !connected) return connected;
    no_delay(p);
    auto exchanged = exchanges(p, 4);
    std::this_thread::sleep_for(5ms);
    return exchanged;
}

TEST(KeepAlive, SocketsReportTheFinApartOnlyOnceTheyCarryRepeatedExchanges) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    const auto r = sockets_of(proxy, p);

    // One request and its answer, as with Connection: close: no EPOLL_CTL_MOD spent.
    ASSERT_TRUE(exchanges(p, 1)) << log_of(proxy);
    std::this_thread::sleep_for(200ms);  // halfpipe's read that finds nothing comes after the bytes
    EXPECT_EQ(sockets_reporting_fin(proxy, r), std::optional<int>(0));

    // A few more: both sockets now report the FIN apart.
    ASSERT_TRUE(exchanges(p, 3)) << log_of(proxy);
    std::optional<int> reporting;
    for (const auto deadline = clock::now() + 3s; clock::now() < deadline; std::this_thread::sleep_for(20ms))
        if ((reporting = sockets_reporting_fin(proxy, r)) == std::optional<int>(2)) break;
    EXPECT_EQ(reporting, std::optional<int>(2)) << log_of(proxy);

    // And the connection still ends cleanly.
    shutdown_write(p.client.get());
    EXPECT_EQ(read_until_end(p.up.get(), clock::now() + 3s).end, read_end::eof) << log_of(proxy);
    shutdown_write(p.up.get());
    EXPECT_EQ(read_until_end(p.client.get(), clock::now() + 3s).end, read_end::eof) << log_of(proxy);
}

// The last bytes and the FIN are sent back to back, so that both are usually in
// halfpipe's socket before it wakes: one wake, one short read, and a FIN behind it
// that raises no further edge. Many connections, to meet that timing often.
TEST(KeepAlive, FinRightBehindTheLastBytesIsPassedOnBothWays) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    for (int i = 0; i < 30; ++i) {
        SCOPED_TRACE("connection " + std::to_string(i));
        relay_pair p;
        ASSERT_TRUE(kept_alive_pair(proxy, server, p)) << log_of(proxy);

        ASSERT_TRUE(write_all_ok(p.client.get(), "last request"));
        shutdown_write(p.client.get());
        auto up_read = read_until_end(p.up.get(), clock::now() + 2s);
        ASSERT_EQ(up_read.end, read_end::eof) << to_string(up_read.end) << log_of(proxy);
        EXPECT_EQ(up_read.data, "last request");

        std::this_thread::sleep_for(5ms);
        ASSERT_TRUE(write_all_ok(p.up.get(), "last answer"));
        shutdown_write(p.up.get());
        auto client_read = read_until_end(p.client.get(), clock::now() + 2s);
        ASSERT_EQ(client_read.end, read_end::eof) << to_string(client_read.end) << log_of(proxy);
        EXPECT_EQ(client_read.data, "last answer");
        auto entry = proxy.next_access(3s);
        ASSERT_TRUE(entry) << log_of(proxy);
        EXPECT_EQ(entry->get("how"), "fin") << entry->line;
    }
}

TEST(KeepAlive, ResetRightBehindTheLastBytesIsPassedOn) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    for (int i = 0; i < 10; ++i) {
        SCOPED_TRACE("connection " + std::to_string(i));
        relay_pair p;
        ASSERT_TRUE(kept_alive_pair(proxy, server, p)) << log_of(proxy);

        ASSERT_TRUE(write_all_ok(p.up.get(), "partial answer"));
        abort_close(p.up);
        auto client_read = read_until_end(p.client.get(), clock::now() + 2s);
        EXPECT_EQ(client_read.data, "partial answer");
        ASSERT_EQ(client_read.end, read_end::reset) << to_string(client_read.end) << log_of(proxy);
        auto entry = proxy.next_access(3s);
        ASSERT_TRUE(entry) << log_of(proxy);
        EXPECT_EQ(entry->get("how"), "rst") << entry->line;
        EXPECT_EQ(entry->get("initiator"), "upstream") << entry->line;
    }
}

}  // namespace
}  // namespace it
