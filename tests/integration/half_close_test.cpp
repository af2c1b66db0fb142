// Contracts 2 and 3: a FIN from one side is passed on while the other direction
// keeps flowing; the half-close timer ends a half-closed connection with resets.
#include <gtest/gtest.h>

#include <netinet/tcp.h>
#include <sys/ioctl.h>

#include <future>
#include <thread>

#include "test_util.hpp"

namespace it {
namespace {

TEST(HalfClose, ClientFinThenUpstreamAnswersLater) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    const std::size_t baseline = count_socket_fds(proxy.pid());

    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    const std::string request = random_bytes(100 * 1024, 11);
    const std::string answer = random_bytes(300 * 1024, 12);
    ASSERT_TRUE(write_all_ok(p.client.get(), request));
    shutdown_write(p.client.get());

    // The upstream reads every byte, then EOF.
    auto up_read = read_until_end(p.up.get(), clock::now() + 5s);
    ASSERT_EQ(up_read.end, read_end::eof) << to_string(up_read.end) << log_of(proxy);
    EXPECT_EQ(describe_difference(request, up_read.data), "");

    // The upstream thinks for 3 s; meanwhile the client must see nothing: no data, no EOF, no reset.
    auto quiet = read_some(p.client.get(), clock::now() + 3s);
    EXPECT_EQ(quiet.end, read_end::timeout) << "client saw " << to_string(quiet.end) << " while the upstream was thinking"
                                            << log_of(proxy);

    // Then answers and closes.
    ASSERT_TRUE(write_all_ok(p.up.get(), answer)) << log_of(proxy);
    p.up.reset();
    auto client_read = read_until_end(p.client.get(), clock::now() + 5s);
    EXPECT_EQ(client_read.end, read_end::eof) << to_string(client_read.end) << log_of(proxy);
    EXPECT_EQ(describe_difference(answer, client_read.data), "");
    p.client.reset();

    auto entry = proxy.next_access(5s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("initiator"), "client") << entry->line;
    EXPECT_EQ(entry->get("how"), "fin") << entry->line;
    EXPECT_EQ(entry->number("bytes_to_upstream"), static_cast<long long>(request.size())) << entry->line;
    EXPECT_EQ(entry->number("bytes_to_client"), static_cast<long long>(answer.size())) << entry->line;
    EXPECT_GE(entry->number("duration_ms"), 2900) << entry->line;

    EXPECT_EQ(wait_socket_fds_at_most(proxy.pid(), baseline, 3s), baseline)
        << "halfpipe still holds sockets of the closed connection";
}

// Both FINs are in, and the client reads slowly. halfpipe's upstream socket is then
// shut both ways, which epoll reports as a hang-up for as long as it lasts: the wait
// for the client must not wake on it again and again.
TEST(HalfClose, SlowClientAfterBothFinsCostsNoCpu) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    const int rcvbuf = 64 * 1024;  // the client holds little of the answer
    ASSERT_EQ(::setsockopt(p.client.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    ASSERT_TRUE(write_all_ok(p.client.get(), "request"));
    shutdown_write(p.client.get());
    ASSERT_EQ(read_until_end(p.up.get(), clock::now() + 5s).end, read_end::eof) << log_of(proxy);

    // The upstream answers until halfpipe stops reading it: its send queue toward the
    // client is full. Each piece waits until halfpipe's kernel has it, so that the
    // FIN that follows gets in behind the last one.
    const std::uint16_t halfpipe_side = peer_port(p.up.get()), upstream_port = local_port(p.up.get());
    const std::string piece = random_bytes(64 * 1024, 31);
    std::string answer;
    for (;;) {
        ASSERT_LT(answer.size(), 64u << 20) << "halfpipe never stopped reading" << log_of(proxy);
        ASSERT_TRUE(write_all_ok(p.up.get(), piece, 5s)) << log_of(proxy);
        answer += piece;
        ASSERT_TRUE(wait_send_queue_empty(p.up.get(), clock::now() + 5s)) << log_of(proxy);
        // Unread, and still unread a moment later: not a busy halfpipe, a stopped one.
        std::this_thread::sleep_for(20ms);
        const std::size_t unread = kernel_unread_bytes(halfpipe_side, upstream_port).value_or(0);
        if (unread == 0) continue;
        std::this_thread::sleep_for(50ms);
        if (kernel_unread_bytes(halfpipe_side, upstream_port).value_or(0) >= unread) break;
    }
    shutdown_write(p.up.get());
    // The upstream had the client's FIN already: once halfpipe has acknowledged this
    // FIN too, the upstream's socket goes from LAST_ACK to CLOSE. halfpipe's socket is
    // then shut both ways (the kernel moves it to CLOSE), with bytes still to read.
    const auto deadline = clock::now() + 5s;
    while (tcp_state(p.up.get()) != TCP_CLOSE && clock::now() < deadline) std::this_thread::sleep_for(5ms);
    ASSERT_EQ(tcp_state(p.up.get()), TCP_CLOSE) << "halfpipe did not take the FIN" << log_of(proxy);
    int at_client = 0;
    ASSERT_EQ(::ioctl(p.client.get(), FIONREAD, &at_client), 0);
    ASSERT_LT(static_cast<std::size_t>(at_client), answer.size()) << "halfpipe holds none of the answer";

    const double before = cpu_seconds(proxy.pid());
    std::this_thread::sleep_for(1s);
    const double used = cpu_seconds(proxy.pid()) - before;
    EXPECT_LT(used, 0.2) << "halfpipe used " << used << " s of CPU in 1 s while it waited for a slow client";

    auto client_read = read_until_end(p.client.get(), clock::now() + 10s);
    EXPECT_EQ(client_read.end, read_end::eof) << to_string(client_read.end) << log_of(proxy);
    EXPECT_EQ(describe_difference(answer, client_read.data), "");
}

TEST(HalfClose, UpstreamFinThenClientKeepsSending) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    const std::size_t baseline = count_socket_fds(proxy.pid());

    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    const std::string greeting = "220 halfpipe integration upstream ready\r\n";
    ASSERT_TRUE(write_all_ok(p.up.get(), greeting));
    shutdown_write(p.up.get());

    auto client_read = read_until_end(p.client.get(), clock::now() + 3s);
    ASSERT_EQ(client_read.end, read_end::eof) << to_string(client_read.end) << log_of(proxy);
    EXPECT_EQ(client_read.data, greeting);

    // The other direction is still open: the client keeps sending after the EOF.
    const std::string more = random_bytes(64 * 1024, 13);
    ASSERT_TRUE(write_all_ok(p.client.get(), more)) << log_of(proxy);
    auto up_read = read_exact(p.up.get(), more.size(), clock::now() + 3s);
    EXPECT_EQ(up_read.end, read_end::data) << to_string(up_read.end) << log_of(proxy);
    EXPECT_EQ(describe_difference(more, up_read.data), "");

    // The client closes normally: the upstream reads EOF, not a reset.
    p.client.reset();
    auto up_end = read_until_end(p.up.get(), clock::now() + 3s);
    EXPECT_EQ(up_end.end, read_end::eof) << to_string(up_end.end) << log_of(proxy);
    EXPECT_EQ(up_end.data.size(), 0u);
    p.up.reset();

    auto entry = proxy.next_access(5s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("initiator"), "upstream") << entry->line;
    EXPECT_EQ(entry->get("how"), "fin") << entry->line;
    EXPECT_EQ(entry->number("bytes_to_upstream"), static_cast<long long>(more.size())) << entry->line;
    EXPECT_EQ(entry->number("bytes_to_client"), static_cast<long long>(greeting.size())) << entry->line;

    EXPECT_EQ(wait_socket_fds_at_most(proxy.pid(), baseline, 3s), baseline)
        << "halfpipe still holds sockets of the closed connection";
}

TEST(HalfClose, TimeoutResetsBothSides) {
    upstream server;
    halfpipe proxy({.upstream = server.address(), .extra = {"--half-close-timeout", "1s"}});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    ASSERT_TRUE(round_trip(p.client.get(), p.up.get(), "ping", "pong"));

    const auto t0 = clock::now();
    shutdown_write(p.client.get());
    auto client_end = std::async(std::launch::async, [&] { return read_until_end(p.client.get(), t0 + 4s); });

    auto up_read = read_until_end(p.up.get(), t0 + 2s);
    ASSERT_EQ(up_read.end, read_end::eof) << "the client's FIN was not passed on: " << to_string(up_read.end)
                                          << log_of(proxy);
    // The upstream stays silent. Having read EOF, it can see the reset only as a socket error.
    const int up_err = wait_socket_error(p.up.get(), t0 + 4s);
    const auto t_up = clock::now();
    auto c = client_end.get();

    // An RST on a socket in CLOSE_WAIT (FIN already received) is reported as EPIPE by Linux.
    EXPECT_TRUE(is_reset_error(up_err)) << "upstream: expected a reset, got " << error_name(up_err) << log_of(proxy);
    EXPECT_ELAPSED_BETWEEN(t0, t_up, 1s - kEarly, 1s + kLate);
    EXPECT_EQ(c.end, read_end::reset) << "client: " << to_string(c.end) << log_of(proxy);
    EXPECT_ELAPSED_BETWEEN(t0, c.when, 1s - kEarly, 1s + kLate);

    auto entry = proxy.next_access(3s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("how"), "timeout") << entry->line;
    EXPECT_EQ(entry->get("reason"), "half_close_timeout") << entry->line;
    EXPECT_EQ(entry->get("initiator"), "proxy") << entry->line;
}

TEST(HalfClose, TimeoutAfterUpstreamFinResetsBothSides) {
    upstream server;
    halfpipe proxy({.upstream = server.address(), .extra = {"--half-close-timeout", "1s"}});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);

    const auto t0 = clock::now();
    shutdown_write(p.up.get());
    auto up_end = std::async(std::launch::async, [&] { return read_until_end(p.up.get(), t0 + 4s); });
    auto c = read_until_end(p.client.get(), t0 + 2s);
    ASSERT_EQ(c.end, read_end::eof) << "the upstream's FIN was not passed on: " << to_string(c.end) << log_of(proxy);
    const int client_err = wait_socket_error(p.client.get(), t0 + 4s);
    const auto t_client = clock::now();
    auto u = up_end.get();

    EXPECT_TRUE(is_reset_error(client_err)) << "client: expected a reset, got " << error_name(client_err) << log_of(proxy);
    EXPECT_ELAPSED_BETWEEN(t0, t_client, 1s - kEarly, 1s + kLate);
    EXPECT_EQ(u.end, read_end::reset) << "upstream: " << to_string(u.end) << log_of(proxy);
    EXPECT_ELAPSED_BETWEEN(t0, u.when, 1s - kEarly, 1s + kLate);

    auto entry = proxy.next_access(3s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("how"), "timeout") << entry->line;
    EXPECT_EQ(entry->get("reason"), "half_close_timeout") << entry->line;
}

TEST(HalfClose, TrafficTheOtherWayExtendsTheTimer) {
    upstream server;
    halfpipe proxy({.upstream = server.address(), .extra = {"--half-close-timeout", "1s"}});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);

    const auto t0 = clock::now();
    shutdown_write(p.client.get());
    ASSERT_EQ(read_until_end(p.up.get(), t0 + 2s).end, read_end::eof) << log_of(proxy);

    // One byte every 300 ms for 2.1 s: longer than the timeout, never silent for 1 s.
    std::string received;
    for (int i = 0; i < 7; ++i) {
        std::this_thread::sleep_for(300ms);
        const std::string byte(1, static_cast<char>('a' + i));
        ASSERT_TRUE(write_all_ok(p.up.get(), byte, 1s)) << "upstream write failed after " << ms(clock::now() - t0)
                                                        << " ms" << log_of(proxy);
        auto r = read_exact(p.client.get(), 1, clock::now() + 1s);
        ASSERT_EQ(r.end, read_end::data) << "byte " << i << " at " << ms(clock::now() - t0) << " ms: "
                                         << to_string(r.end) << log_of(proxy);
        received += r.data;
    }
    EXPECT_EQ(received, "abcdefg");
    EXPECT_EQ(wait_socket_error(p.up.get(), clock::now()), 0) << "upstream side was reset while active";

    // Now silence: the timer, restarted by the last byte, ends the connection.
    const auto t_last = clock::now();
    auto c = read_until_end(p.client.get(), t_last + 4s);
    EXPECT_EQ(c.end, read_end::reset) << to_string(c.end) << log_of(proxy);
    EXPECT_ELAPSED_BETWEEN(t_last, c.when, 1s - kEarly, 1s + kLate);
    const int up_err = wait_socket_error(p.up.get(), clock::now() + 1s);
    EXPECT_TRUE(is_reset_error(up_err)) << "upstream: expected a reset, got " << error_name(up_err);
}

}  // namespace
}  // namespace it
