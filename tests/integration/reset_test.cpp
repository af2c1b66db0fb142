// Contract 4: an RST on one side becomes an RST on the other, after the bytes that
// were already sent; a close() with data still flowing resets the other side.
#include <gtest/gtest.h>

#include <signal.h>

#include <atomic>
#include <future>
#include <thread>

#include "test_util.hpp"

namespace it {
namespace {

TEST(Reset, ClientAbortDeliversWrittenBytesThenResetsUpstream) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    const std::size_t baseline = count_socket_fds(proxy.pid());
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    const std::string payload = random_bytes(1024 * 1024, 21);

    auto up_side = std::async(std::launch::async, [&] { return read_until_end(p.up.get(), clock::now() + 10s); });
    ASSERT_TRUE(write_all_ok(p.client.get(), payload, 5s)) << log_of(proxy);
    // Every byte has left the client (acknowledged by halfpipe's kernel) before the RST.
    ASSERT_TRUE(wait_send_queue_empty(p.client.get(), clock::now() + 5s)) << log_of(proxy);
    abort_close(p.client);
    auto r = up_side.get();

    EXPECT_EQ(describe_difference(payload, r.data), "") << "bytes written before the abort were lost";
    EXPECT_EQ(r.end, read_end::reset) << "upstream read ended with " << to_string(r.end) << " instead of a reset"
                                      << log_of(proxy);

    auto entry = proxy.next_access(3s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("initiator"), "client") << entry->line;
    EXPECT_EQ(entry->get("how"), "rst") << entry->line;
    EXPECT_EQ(entry->number("bytes_to_upstream"), static_cast<long long>(payload.size())) << entry->line;
    EXPECT_EQ(wait_socket_fds_at_most(proxy.pid(), baseline, 3s), baseline)
        << "halfpipe still holds sockets of the reset connection";
}

// rst_flush: bytes halfpipe has already read from the client, but that still sit in
// its send queue toward a slow upstream, are delivered before the reset is passed on
// (as long as that takes less than rst_flush, 1 s by default).
TEST(Reset, ClientAbortWhileUpstreamIsSlowStillDeliversBytes) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    // More than the upstream's receive window: the rest waits inside halfpipe.
    const std::string payload = random_bytes(1024 * 1024, 22);

    ASSERT_TRUE(write_all_ok(p.client.get(), payload, 5s));
    ASSERT_TRUE(wait_send_queue_empty(p.client.get(), clock::now() + 5s))
        << "halfpipe did not take the client's bytes while the upstream was not reading" << log_of(proxy);
    abort_close(p.client);
    // The upstream only starts reading later (well within rst_flush = 1 s).
    std::this_thread::sleep_for(300ms);
    auto r = read_until_end(p.up.get(), clock::now() + 3s);
    EXPECT_EQ(describe_difference(payload, r.data), "") << "bytes halfpipe had read before the reset were lost";
    EXPECT_EQ(r.end, read_end::reset) << to_string(r.end) << log_of(proxy);
}

TEST(Reset, UpstreamAbortWhileClientIsSlowStillDeliversBytes) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    const std::string payload = random_bytes(1024 * 1024, 24);

    ASSERT_TRUE(write_all_ok(p.up.get(), payload, 5s));
    ASSERT_TRUE(wait_send_queue_empty(p.up.get(), clock::now() + 5s))
        << "halfpipe did not take the upstream's bytes while the client was not reading" << log_of(proxy);
    abort_close(p.up);
    std::this_thread::sleep_for(300ms);
    auto r = read_until_end(p.client.get(), clock::now() + 3s);
    EXPECT_EQ(describe_difference(payload, r.data), "") << "bytes halfpipe had read before the reset were lost";
    EXPECT_EQ(r.end, read_end::reset) << to_string(r.end) << log_of(proxy);
}

TEST(Reset, UpstreamAbortDeliversWrittenBytesThenResetsClient) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    const std::string payload = random_bytes(1024 * 1024, 23);

    auto client_side = std::async(std::launch::async, [&] { return read_until_end(p.client.get(), clock::now() + 10s); });
    ASSERT_TRUE(write_all_ok(p.up.get(), payload, 5s)) << log_of(proxy);
    ASSERT_TRUE(wait_send_queue_empty(p.up.get(), clock::now() + 5s)) << log_of(proxy);
    abort_close(p.up);
    auto r = client_side.get();

    EXPECT_EQ(describe_difference(payload, r.data), "") << "bytes written before the abort were lost";
    EXPECT_EQ(r.end, read_end::reset) << "client read ended with " << to_string(r.end) << " instead of a reset"
                                      << log_of(proxy);

    auto entry = proxy.next_access(3s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("initiator"), "upstream") << entry->line;
    EXPECT_EQ(entry->get("how"), "rst") << entry->line;
    EXPECT_EQ(entry->number("bytes_to_client"), static_cast<long long>(payload.size())) << entry->line;
}

// The upstream answers and resets while the client's next bytes are on their way.
// halfpipe, stopped meanwhile, finds both when it resumes, the client's first: the
// write toward the upstream meets the reset before the upstream's answer is read.
// The answer must still reach the client, then the reset.
TEST(Reset, UpstreamAnswerBeforeItsResetSurvivesAWriteThatMeetsTheReset) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    ASSERT_TRUE(round_trip(p.client.get(), p.up.get(), "hello", "welcome")) << log_of(proxy);
    const std::string answer = random_bytes(32 * 1024, 25);

    struct resume {
        pid_t pid;
        ~resume() { ::kill(pid, SIGCONT); }
    } resume_on_exit{proxy.pid()};
    ASSERT_TRUE(stop_and_wait(proxy.pid()));
    ASSERT_TRUE(write_all_ok(p.client.get(), "more of the request", 2s));
    ASSERT_TRUE(write_all_ok(p.up.get(), answer, 2s));
    abort_close(p.up);
    std::this_thread::sleep_for(100ms);  // the kernel takes both for halfpipe
    ASSERT_EQ(::kill(proxy.pid(), SIGCONT), 0);

    auto r = read_until_end(p.client.get(), clock::now() + 5s);
    EXPECT_EQ(describe_difference(answer, r.data), "") << "the answer sent before the reset was lost" << log_of(proxy);
    EXPECT_EQ(r.end, read_end::reset) << to_string(r.end) << log_of(proxy);

    auto entry = proxy.next_access(3s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("initiator"), "upstream") << entry->line;
    EXPECT_EQ(entry->get("how"), "rst") << entry->line;
    // What reached a socket counts, not what was read: the last client bytes never did.
    EXPECT_EQ(entry->number("bytes_to_upstream"), 5) << entry->line;
    EXPECT_EQ(entry->number("bytes_to_client"), static_cast<long long>(7 + answer.size())) << entry->line;
}

// Writes chunks until the socket fails or the deadline passes; returns errno and when.
struct stream_end {
    int err = 0;
    clock::time_point when;
    std::size_t written = 0;
};
stream_end stream_until_error(int fd, clock::time_point deadline) {
    const std::string chunk = random_bytes(64 * 1024, 99);
    stream_end s;
    while (clock::now() < deadline) {
        int err = 0;
        s.written += write_all(fd, chunk, std::min(deadline, clock::now() + 100ms), &err);
        if (err != 0 && err != ETIMEDOUT) {
            s.err = err;
            s.when = clock::now();
            return s;
        }
    }
    s.when = clock::now();
    return s;
}

TEST(Reset, ClientCloseWhileUpstreamStreamsResetsUpstreamWithinOneSecond) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);

    auto streaming = std::async(std::launch::async, [&] { return stream_until_error(p.up.get(), clock::now() + 8s); });
    auto first = read_exact(p.client.get(), 1024 * 1024, clock::now() + 5s);
    ASSERT_EQ(first.end, read_end::data) << to_string(first.end) << log_of(proxy);
    std::this_thread::sleep_for(50ms);  // more data is waiting, unread, in the client socket
    const auto t_close = clock::now();
    p.client.reset();  // a plain close(), not an abort
    auto s = streaming.get();

    EXPECT_TRUE(is_reset_error(s.err)) << "upstream write never failed: " << error_name(s.err) << log_of(proxy);
    EXPECT_LE(s.when - t_close, 1s) << "upstream noticed after " << ms(s.when - t_close) << " ms";
}

TEST(Reset, UpstreamCloseWhileClientStreamsResetsClientWithinOneSecond) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);

    auto streaming = std::async(std::launch::async, [&] { return stream_until_error(p.client.get(), clock::now() + 8s); });
    auto first = read_exact(p.up.get(), 1024 * 1024, clock::now() + 5s);
    ASSERT_EQ(first.end, read_end::data) << to_string(first.end) << log_of(proxy);
    std::this_thread::sleep_for(50ms);
    const auto t_close = clock::now();
    p.up.reset();
    auto s = streaming.get();

    EXPECT_TRUE(is_reset_error(s.err)) << "client write never failed: " << error_name(s.err) << log_of(proxy);
    EXPECT_LE(s.when - t_close, 1s) << "client noticed after " << ms(s.when - t_close) << " ms";
}

// Fills every buffer between `from` and a peer that does not read, for `how_long`.
std::size_t fill_pipe(int from, clock::duration how_long) {
    const std::string chunk = random_bytes(64 * 1024, 98);
    std::size_t total = 0;
    const auto until = clock::now() + how_long;
    while (clock::now() < until) {
        int err = 0;
        total += write_all(from, chunk, std::min(until, clock::now() + 50ms), &err);
        if (err != 0 && err != ETIMEDOUT) break;
    }
    return total;
}

// The reset is passed on even when the direction it comes from is stalled (the
// receiver does not read, every buffer is full): after at most rst_flush (1 s by
// default) the bytes still in flight are given up and the other side is reset.
TEST(Reset, ClientAbortReachesStalledUpstreamWithinRstFlush) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    const std::size_t sent = fill_pipe(p.client.get(), 1500ms);
    ASSERT_GT(sent, 0u);
    const auto t0 = clock::now();
    abort_close(p.client);
    // The upstream still does not read; it watches for the reset only.
    const int err = wait_socket_error(p.up.get(), t0 + 5s);
    const auto t_reset = clock::now();
    EXPECT_TRUE(is_reset_error(err)) << "upstream not reset within 5 s of the client's abort: " << error_name(err)
                                     << log_of(proxy);
    EXPECT_LE(t_reset - t0, 1s + kLate) << "reset passed on after " << ms(t_reset - t0) << " ms";
}

TEST(Reset, UpstreamAbortReachesStalledClientWithinRstFlush) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    const std::size_t sent = fill_pipe(p.up.get(), 1500ms);
    ASSERT_GT(sent, 0u);
    const auto t0 = clock::now();
    abort_close(p.up);
    const int err = wait_socket_error(p.client.get(), t0 + 5s);
    const auto t_reset = clock::now();
    EXPECT_TRUE(is_reset_error(err)) << "client not reset within 5 s of the upstream's abort: " << error_name(err)
                                     << log_of(proxy);
    EXPECT_LE(t_reset - t0, 1s + kLate) << "reset passed on after " << ms(t_reset - t0) << " ms";
}

}  // namespace
}  // namespace it
