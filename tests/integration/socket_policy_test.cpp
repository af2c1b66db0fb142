// Contract 8: socket policies. Closes that halfpipe initiates (timeouts) are
// resets, leaving no TIME_WAIT; several workers all accept.
#include <gtest/gtest.h>
#include <netinet/tcp.h>

#include <future>
#include <thread>

#include "test_util.hpp"

namespace it {
namespace {

TEST(SocketPolicy, TimeoutClosesLeaveNoTimeWait) {
    upstream server;
    halfpipe proxy({.upstream = server.address(), .extra = {"--idle-timeout", "1s", "--half-close-timeout", "1s"}});
    // One connection idles out, one times out half-closed, one idles out after traffic.
    relay_pair idle, half, busy;
    ASSERT_TRUE(connect_pair(proxy, server, idle)) << log_of(proxy);
    ASSERT_TRUE(connect_pair(proxy, server, half)) << log_of(proxy);
    ASSERT_TRUE(connect_pair(proxy, server, busy)) << log_of(proxy);
    ASSERT_TRUE(round_trip(busy.client.get(), busy.up.get(), random_bytes(100000, 41), random_bytes(100000, 42)));
    shutdown_write(half.client.get());
    ASSERT_EQ(read_until_end(half.up.get(), clock::now() + 2s).end, read_end::eof);

    const auto deadline = clock::now() + 4s;
    for (relay_pair* p : {&idle, &half, &busy}) {
        auto r = read_until_end(p->client.get(), deadline);
        EXPECT_EQ(r.end, read_end::reset) << to_string(r.end) << log_of(proxy);
    }
    for (relay_pair* p : {&idle, &busy}) EXPECT_EQ(read_until_end(p->up.get(), deadline).end, read_end::reset);
    EXPECT_TRUE(is_reset_error(wait_socket_error(half.up.get(), deadline)));
    // Our own sockets are in CLOSE after the resets; closing them adds nothing.
    for (relay_pair* p : {&idle, &half, &busy}) {
        p->client.reset();
        p->up.reset();
    }
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(count_kernel_sockets(server.port(), TCP_TIME_WAIT), 0u) << "TIME_WAIT sockets toward the upstream port";
    EXPECT_EQ(count_kernel_sockets(proxy.port(), TCP_TIME_WAIT), 0u) << "TIME_WAIT sockets on the listening port";
}

TEST(SocketPolicy, TwoWorkersBothAccept) {
    upstream server("127.0.0.1", upstream::echo());
    halfpipe one({.upstream = server.address(), .extra = {"--workers", "1"}});
    halfpipe two({.upstream = server.address(), .extra = {"--workers", "2"}});
    const std::size_t threads_one = count_threads(one.pid());
    const std::size_t threads_two = count_threads(two.pid());
    EXPECT_GE(threads_two, threads_one + 1) << "--workers 2 runs no more threads than --workers 1";
    // With SO_REUSEPORT each worker has its own listening socket on the port.
    const std::size_t listeners = count_kernel_sockets(two.port(), TCP_LISTEN);
    EXPECT_EQ(listeners, 2u) << "listening sockets on port " << two.port();

    // Many connections at once all relay, whichever worker took them.
    std::vector<socket_fd> clients;
    for (int i = 0; i < 32; ++i) {
        clients.push_back(two.connect());
        ASSERT_TRUE(clients.back()) << "connect " << i << log_of(two);
    }
    for (std::size_t i = 0; i < clients.size(); ++i) {
        const std::string msg = "hello " + std::to_string(i);
        ASSERT_TRUE(write_all_ok(clients[i].get(), msg));
        auto r = read_exact(clients[i].get(), msg.size(), clock::now() + 3s);
        EXPECT_EQ(r.data, msg) << "connection " << i << ": " << to_string(r.end) << log_of(two);
    }
}

}  // namespace
}  // namespace it
