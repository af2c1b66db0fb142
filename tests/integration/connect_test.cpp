// Contract 5: when the upstream cannot be reached, the client is reset promptly.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

#include "test_util.hpp"

namespace it {
namespace {

TEST(Connect, RefusedUpstreamResetsClientPromptly) {
    const std::uint16_t dead_port = unused_port();
    halfpipe proxy({.upstream = "127.0.0.1:" + std::to_string(dead_port)});
    const auto t0 = clock::now();
    socket_fd client = proxy.connect();
    ASSERT_TRUE(client) << log_of(proxy);
    auto r = read_until_end(client.get(), t0 + 3s);
    EXPECT_EQ(r.end, read_end::reset) << "client read ended with " << to_string(r.end) << log_of(proxy);
    EXPECT_LT(r.when - t0, 1s) << "reset came after " << ms(r.when - t0) << " ms";

    auto entry = proxy.next_access(3s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("how"), "error") << entry->line;
    EXPECT_EQ(entry->get("reason"), "connect_refused") << entry->line;
    EXPECT_EQ(entry->number("bytes_to_upstream"), 0) << entry->line;
    EXPECT_EQ(entry->number("bytes_to_client"), 0) << entry->line;
}

TEST(Connect, RefusedUpstreamDoesNotKillTheListener) {
    const std::uint16_t dead_port = unused_port();
    halfpipe proxy({.upstream = "127.0.0.1:" + std::to_string(dead_port)});
    for (int i = 0; i < 5; ++i) {
        int err = 0;
        socket_fd client = proxy.connect(2s, &err);
        ASSERT_TRUE(client) << "attempt " << i << ": " << error_name(err) << log_of(proxy);
        auto r = read_until_end(client.get(), clock::now() + 3s);
        EXPECT_EQ(r.end, read_end::reset) << "attempt " << i << ": " << to_string(r.end);
    }
    EXPECT_TRUE(proxy.proc().running());
}

// An upstream whose accept queue is full drops SYNs (tcp_abort_on_overflow = 0), so
// halfpipe's connect hangs until --connect-timeout.
TEST(Connect, TimeoutResetsClientAfterConnectTimeout) {
    socket_fd blackhole = listen_tcp("127.0.0.1", 0, 0);
    const std::uint16_t port = local_port(blackhole.get());
    socket_fd filler = connect_tcp("127.0.0.1", port, 1s);
    ASSERT_TRUE(filler);
    {
        int err = 0;
        socket_fd probe = connect_tcp("127.0.0.1", port, 300ms, &err);
        if (probe || err != ETIMEDOUT) GTEST_SKIP() << "the kernel does not drop SYNs on a full accept queue here";
    }
    halfpipe proxy({.upstream = "127.0.0.1:" + std::to_string(port), .extra = {"--connect-timeout", "1s"}});
    const auto t0 = clock::now();
    socket_fd client = proxy.connect();
    ASSERT_TRUE(client) << log_of(proxy);
    auto r = read_until_end(client.get(), t0 + 4s);
    EXPECT_EQ(r.end, read_end::reset) << to_string(r.end) << log_of(proxy);
    EXPECT_ELAPSED_BETWEEN(t0, r.when, 1s - kEarly, 1s + kLate);

    auto entry = proxy.next_access(3s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("reason"), "connect_timeout") << entry->line;
    EXPECT_TRUE(entry->get("how") == "timeout" || entry->get("how") == "error") << entry->line;
}

// The connect timeout bounds the name lookup too: a lookup that takes longer is
// given up on, whatever getaddrinfo does meanwhile. The preloaded shim makes the
// lookup of slow.halfpipe.test take 1 s.
TEST(Connect, ConnectTimeoutCutsASlowLookupShort) {
    upstream server;
    halfpipe proxy({.upstream = slow_name_for(server),
                    .extra = {"--connect-timeout", "300ms"},
                    .env = {"LD_PRELOAD=" SLOW_RESOLVE_SHIM}});
    const auto t0 = clock::now();
    socket_fd client = proxy.connect();
    ASSERT_TRUE(client) << log_of(proxy);
    auto r = read_until_end(client.get(), t0 + 3s);
    EXPECT_EQ(r.end, read_end::reset) << to_string(r.end) << log_of(proxy);
    EXPECT_ELAPSED_BETWEEN(t0, r.when, 300ms - kEarly, 300ms + kLate - 200ms);

    auto entry = proxy.next_access(3s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("reason"), "connect_timeout") << entry->line;
}

std::size_t shim_lookups(const halfpipe& proxy) {
    const std::string log = proxy.log();
    std::size_t n = 0;
    for (auto at = log.find("slow_resolve_shim: lookup"); at != std::string::npos;
         at = log.find("slow_resolve_shim: lookup", at + 1))
        ++n;
    return n;
}

// Sessions that ask for a name while it is being looked up share that lookup: forty
// connections at once to an upstream given by a slow name all reach it after one
// lookup's time, and halfpipe asked for the name once.
TEST(Connect, SessionsAskingAtOnceShareOneLookup) {
    constexpr std::size_t sessions = 40;
    upstream server;
    halfpipe proxy({.upstream = slow_name_for(server),
                    .extra = {"--workers", "1"},
                    .env = {"LD_PRELOAD=" SLOW_RESOLVE_SHIM}});
    const auto t0 = clock::now();
    std::vector<socket_fd> clients;
    for (std::size_t i = 0; i < sessions; ++i) {
        clients.push_back(proxy.connect());
        ASSERT_TRUE(clients.back()) << log_of(proxy);
    }
    ASSERT_TRUE(server.wait_accepted(sessions, 5s)) << log_of(proxy);
    EXPECT_ELAPSED_BETWEEN(t0, clock::now(), 1s - kEarly, 1s + kLate - 200ms);
    EXPECT_EQ(shim_lookups(proxy), 1u) << log_of(proxy);
}

// Different names are looked up side by side, each on a thread of its own, even
// many at once on one worker: forty forward clients, each asking for a name that
// takes a second, all get their tunnel after about a second.
TEST(Connect, DistinctNamesAreLookedUpSideBySide) {
    constexpr std::size_t sessions = 40;
    upstream server;
    halfpipe proxy({"--listen", "127.0.0.1:0", "--mode", "connect", "--admin", "off", "--workers", "1"},
                   {.env = {"LD_PRELOAD=" SLOW_RESOLVE_SHIM}});
    proxy.wait_listening();
    const std::string port = server.address().substr(server.address().rfind(':') + 1);
    const auto t0 = clock::now();
    std::vector<socket_fd> clients;
    for (std::size_t i = 0; i < sessions; ++i) {
        clients.push_back(proxy.connect());
        ASSERT_TRUE(clients.back()) << log_of(proxy);
        const std::string authority = std::to_string(i) + ".slow.halfpipe.test:" + port;
        ASSERT_TRUE(write_all_ok(clients.back().get(), "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority +
                                                           "\r\n\r\n"));
    }
    for (auto& c : clients) {
        auto r = read_some(c.get(), t0 + 5s);
        EXPECT_TRUE(r.data.starts_with("HTTP/1.1 200")) << r.data << log_of(proxy);
    }
    EXPECT_ELAPSED_BETWEEN(t0, clock::now(), 1s - kEarly, 1s + kLate - 200ms);
    EXPECT_EQ(shim_lookups(proxy), sessions) << log_of(proxy);
}

// A lookup thread that cannot be started (a tasks limit) holds up its name only until
// the next session asks for it: that session starts the thread, and both the name and
// the upstream behind it work again.
TEST(Connect, ANameRecoversFromALookupThreadThatCouldNotStart) {
    upstream server;
    const std::string flag = "/tmp/halfpipe-refuse-threads-" + std::to_string(::getpid());
    std::FILE* created = std::fopen(flag.c_str(), "w");
    ASSERT_TRUE(created) << flag;
    std::fclose(created);
    struct remove_flag {
        const std::string& path;
        ~remove_flag() { std::remove(path.c_str()); }
    } cleanup{flag};
    const std::string address = server.address();
    halfpipe proxy({.upstream = "localhost:" + address.substr(address.rfind(':') + 1),
                    .extra = {"--workers", "1", "--connect-timeout", "1s"},
                    .env = {"LD_PRELOAD=" THREAD_REFUSED_SHIM, "HALFPIPE_REFUSE_THREADS=" + flag}});
    socket_fd first = proxy.connect();
    ASSERT_TRUE(first) << log_of(proxy);
    auto r = read_until_end(first.get(), clock::now() + 4s);
    EXPECT_EQ(r.end, read_end::reset) << to_string(r.end) << log_of(proxy);
    auto entry = proxy.next_access(3s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("reason"), "connect_timeout") << entry->line;

    std::remove(flag.c_str());
    socket_fd second = proxy.connect();
    ASSERT_TRUE(second) << log_of(proxy);
    EXPECT_TRUE(server.wait_accepted(1, 3s)) << log_of(proxy);
}

}  // namespace
}  // namespace it
