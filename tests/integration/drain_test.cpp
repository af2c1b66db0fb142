// Contract 10: SIGTERM stops accepting, lets live connections run until the drain
// timeout, then resets them and exits 0.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstring>
#include <fstream>
#include <future>
#include <iterator>
#include <thread>

#include "test_util.hpp"

namespace it {
namespace {

TEST(Drain, LiveConnectionRelaysUntilDrainTimeoutThenIsReset) {
    upstream server;
    halfpipe proxy({.upstream = server.address(), .extra = {"--drain-timeout", "1s"}});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    ASSERT_TRUE(round_trip(p.client.get(), p.up.get(), "before", "signal")) << log_of(proxy);

    const auto t0 = clock::now();
    proxy.proc().send_signal(SIGTERM);
    EXPECT_TRUE(proxy.wait_for_line(R"((^|\s)event=draining\b)", 1s)) << log_of(proxy);

    // New connections are refused soon after the signal.
    bool refused = false;
    int last_err = 0;
    std::vector<socket_fd> accepted_meanwhile;
    while (!refused && clock::now() - t0 < 1s) {
        socket_fd probe = proxy.connect(200ms, &last_err);
        if (!probe && last_err == ECONNREFUSED) {
            refused = true;
        } else {
            if (probe) accepted_meanwhile.push_back(std::move(probe));
            std::this_thread::sleep_for(20ms);
        }
    }
    const auto t_refused = clock::now();
    EXPECT_TRUE(refused) << "connects still not refused 1 s after SIGTERM (last: " << error_name(last_err) << ")"
                         << log_of(proxy);
    EXPECT_LE(t_refused - t0, 500ms) << "connects refused only after " << ms(t_refused - t0) << " ms";
    for (auto& s : accepted_meanwhile) abort_close(s);

    // The live connection keeps relaying both ways until close to the drain timeout.
    int trips = 0;
    while (clock::now() - t0 < 750ms) {
        ASSERT_TRUE(round_trip(p.client.get(), p.up.get(), "c" + std::to_string(trips), "u" + std::to_string(trips), 1s))
            << "relay stopped " << ms(clock::now() - t0) << " ms after SIGTERM" << log_of(proxy);
        ++trips;
        std::this_thread::sleep_for(100ms);
    }
    EXPECT_GE(trips, 3);

    // Then it is reset on both sides, about 1 s after the signal.
    auto client_end = std::async(std::launch::async, [&] { return read_until_end(p.client.get(), t0 + 4s); });
    auto u = read_until_end(p.up.get(), t0 + 4s);
    auto c = client_end.get();
    EXPECT_EQ(c.end, read_end::reset) << "client: " << to_string(c.end) << log_of(proxy);
    EXPECT_EQ(u.end, read_end::reset) << "upstream: " << to_string(u.end) << log_of(proxy);
    EXPECT_ELAPSED_BETWEEN(t0, c.when, 1s - kEarly, 1s + kLate);

    auto status = proxy.proc().wait_exit(t0 + 4s - clock::now());
    ASSERT_TRUE(status) << "halfpipe still running 4 s after SIGTERM" << log_of(proxy);
    EXPECT_EQ(proxy.proc().exit_code(), 0) << log_of(proxy);
    EXPECT_TRUE(proxy.wait_for_line(R"((^|\s)event=stopped\b)", 1s)) << log_of(proxy);

    auto entry = proxy.access_for_client_port(p.client_port, 1s);
    ASSERT_TRUE(entry) << log_of(proxy);
    EXPECT_EQ(entry->get("initiator"), "proxy") << entry->line;
}

TEST(Drain, SigtermWithoutConnectionsExitsPromptly) {
    upstream server;
    halfpipe proxy({.upstream = server.address(), .extra = {"--drain-timeout", "5s"}});
    const auto t0 = clock::now();
    proxy.proc().send_signal(SIGTERM);
    auto status = proxy.proc().wait_exit(2s);
    ASSERT_TRUE(status) << "halfpipe still running 2 s after SIGTERM" << log_of(proxy);
    EXPECT_LT(clock::now() - t0, 1s) << "exit took " << ms(clock::now() - t0) << " ms";
    EXPECT_EQ(proxy.proc().exit_code(), 0) << log_of(proxy);
    EXPECT_TRUE(proxy.wait_for_line(R"((^|\s)event=stopped\b)", 1s)) << log_of(proxy);
}

TEST(Drain, ExitsAsSoonAsTheLastConnectionEnds) {
    upstream server;
    halfpipe proxy({.upstream = server.address(), .extra = {"--drain-timeout", "10s"}});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    proxy.proc().send_signal(SIGTERM);
    ASSERT_TRUE(proxy.wait_for_line(R"((^|\s)event=draining\b)", 1s)) << log_of(proxy);
    ASSERT_TRUE(round_trip(p.client.get(), p.up.get(), "during", "drain")) << log_of(proxy);

    // The connection ends normally; halfpipe need not wait for the rest of the 10 s.
    const auto t_end = clock::now();
    shutdown_write(p.client.get());
    EXPECT_EQ(read_until_end(p.up.get(), clock::now() + 2s).end, read_end::eof);
    p.up.reset();
    EXPECT_EQ(read_until_end(p.client.get(), clock::now() + 2s).end, read_end::eof);
    p.client.reset();
    auto status = proxy.proc().wait_exit(3s);
    ASSERT_TRUE(status) << "halfpipe still running 3 s after its last connection ended" << log_of(proxy);
    EXPECT_LT(clock::now() - t_end, 1500ms);
    EXPECT_EQ(proxy.proc().exit_code(), 0) << log_of(proxy);
}

// A session that the drain ends while its upstream's name is still being resolved
// never opens a connection to that upstream once the name resolves. The preloaded
// shim makes the lookup take 1 s; halfpipe gives ended sessions 2 s to unwind.
TEST(Drain, SessionEndedWhileResolvingNeverConnects) {
    upstream server;
    halfpipe proxy({.upstream = slow_name_for(server),
                    .extra = {"--drain-timeout", "100ms"},
                    .env = {"LD_PRELOAD=" SLOW_RESOLVE_SHIM}});
    std::ifstream maps("/proc/" + std::to_string(proxy.pid()) + "/maps");
    const std::string mapped((std::istreambuf_iterator<char>(maps)), std::istreambuf_iterator<char>());
    ASSERT_NE(mapped.find(SLOW_RESOLVE_SHIM), std::string::npos) << "the shim is not loaded" << log_of(proxy);

    int err = 0;
    auto client = proxy.connect(2s, &err);
    ASSERT_TRUE(client) << std::strerror(err) << log_of(proxy);
    std::this_thread::sleep_for(200ms);  // the lookup has begun
    proxy.proc().send_signal(SIGTERM);
    ASSERT_TRUE(proxy.wait_for_line(R"((^|\s)event=drain_timeout\b)", 2s)) << log_of(proxy);
    auto status = proxy.proc().wait_exit(5s);
    ASSERT_TRUE(status) << "halfpipe still running 5 s after SIGTERM" << log_of(proxy);
    EXPECT_FALSE(server.accept(300ms)) << "halfpipe connected to the upstream of a session that had ended"
                                       << log_of(proxy);
    auto r = read_until_end(client.get(), clock::now() + 1s);
    EXPECT_NE(r.end, read_end::timeout) << "the client's connection was left open";
}

}  // namespace
}  // namespace it
