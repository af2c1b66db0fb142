// Contract 8: socket policies. Closes that halfpipe initiates (timeouts) are
// resets, leaving no TIME_WAIT; several workers all accept; both sockets of a
// connection carry the listener's TCP options.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <future>
#include <optional>
#include <thread>

#include "test_util.hpp"

namespace it {
namespace {

// A copy of the descriptor of halfpipe's own socket whose local or peer port is
// `port` (pidfd_getfd: the same socket, seen from this process).
socket_fd halfpipe_socket(pid_t pid, std::uint16_t port, bool peer) {
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) return socket_fd();
    socket_fd found;
    for (int target = 0; target < 1024 && !found; ++target) {
        socket_fd copy(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, target, 0)));
        if (!copy) continue;
        if ((peer ? peer_port(copy.get()) : local_port(copy.get())) == port) found = std::move(copy);
    }
    ::close(pidfd);
    return found;
}

std::optional<int> int_option(int fd, int level, int name) {
    int value = 0;
    socklen_t len = sizeof value;
    if (::getsockopt(fd, level, name, &value, &len) != 0) return std::nullopt;
    return value;
}

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
    // Our own sockets are in CLOSE after the resets; closing them adds nothing. The
    // connections are told apart by their other port: the client's, and halfpipe's
    // toward the upstream.
    std::vector<std::uint16_t> client_ports, upstream_side_ports;
    for (relay_pair* p : {&idle, &half, &busy}) {
        client_ports.push_back(local_port(p->client.get()));
        upstream_side_ports.push_back(peer_port(p->up.get()));
        p->client.reset();
        p->up.reset();
    }
    std::this_thread::sleep_for(200ms);
    for (std::size_t i = 0; i < client_ports.size(); ++i) {
        EXPECT_EQ(count_kernel_sockets_between(upstream_side_ports[i], server.port(), TCP_TIME_WAIT), 0u)
            << "TIME_WAIT sockets toward the upstream, connection " << i;
        EXPECT_EQ(count_kernel_sockets_between(client_ports[i], proxy.port(), TCP_TIME_WAIT), 0u)
            << "TIME_WAIT sockets on the listening port, connection " << i;
    }
}

TEST(SocketPolicy, BothSocketsCarryNodelayAndKeepalive) {
    upstream server;
    temp_dir dir;
    const auto file = dir.write("options.yaml", "workers: 2\n"
                                                "admin: off\n"
                                                "listeners:\n"
                                                "  - name: options\n"
                                                "    bind: 127.0.0.1:0\n"
                                                "    tcp_nodelay: true\n"
                                                "    keepalive: {idle: 7s, interval: 3s, probes: 4}\n"
                                                "    upstream:\n"
                                                "      address: " +
                                                    server.address() + "\n");
    halfpipe proxy({"--config", file.string()}, {});
    proxy.wait_listening();
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    // Once bytes pass, halfpipe has set up the upstream socket too.
    ASSERT_TRUE(round_trip(p.client.get(), p.up.get(), "ping", "pong")) << log_of(proxy);

    // The accepted socket (its peer is our client) and the upstream one (our upstream's peer).
    const socket_fd accepted = halfpipe_socket(proxy.pid(), p.client_port, true);
    const socket_fd outgoing = halfpipe_socket(proxy.pid(), peer_port(p.up.get()), false);
    ASSERT_TRUE(accepted) << "no socket of halfpipe's with peer port " << p.client_port;
    ASSERT_TRUE(outgoing) << "no socket of halfpipe's toward the upstream";
    for (const auto* s : {&accepted, &outgoing}) {
        const char* which = s == &accepted ? "accepted" : "upstream";
        EXPECT_EQ(int_option(s->get(), IPPROTO_TCP, TCP_NODELAY), 1) << which;
        EXPECT_EQ(int_option(s->get(), SOL_SOCKET, SO_KEEPALIVE), 1) << which;
        EXPECT_EQ(int_option(s->get(), IPPROTO_TCP, TCP_KEEPIDLE), 7) << which;
        EXPECT_EQ(int_option(s->get(), IPPROTO_TCP, TCP_KEEPINTVL), 3) << which;
        EXPECT_EQ(int_option(s->get(), IPPROTO_TCP, TCP_KEEPCNT), 4) << which;
    }
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
