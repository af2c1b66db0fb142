// The process's signals reach the control thread alone: every thread halfpipe starts
// (workers, the admin endpoint, name lookups) holds them back, so that none has a
// blocking call cut short with EINTR for a signal that is not its business.
#include <gtest/gtest.h>

#include <csignal>
#include <map>
#include <thread>

#include "test_util.hpp"

namespace it {
namespace {

// Thread name → its blocked signals (/proc's SigBlk mask).
std::map<std::string, std::uint64_t> blocked_by_thread(pid_t pid) {
    std::map<std::string, std::uint64_t> out;
    for (const auto& [name, mask] : status_field_by_thread(pid, "SigBlk")) out[name] = std::stoull(mask, nullptr, 16);
    return out;
}

bool blocks(std::uint64_t mask, int signo) { return (mask >> (signo - 1)) & 1; }

TEST(ThreadSignals, OnlyTheControlThreadTakesTheProcessSignals) {
    upstream server;
    const std::string address = server.address();
    // A name for an upstream starts a lookup thread with the first connection.
    halfpipe proxy({.upstream = "localhost:" + address.substr(address.rfind(':') + 1),
                    .extra = {"--workers", "2", "--admin", "127.0.0.1:0"},
                    .admin_off = false});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
    EXPECT_TRUE(round_trip(p.client.get(), p.up.get(), "ping", "pong")) << log_of(proxy);

    auto blocked = blocked_by_thread(proxy.pid());
    for (const auto deadline = clock::now() + 3s; clock::now() < deadline && !blocked.count("halfpipe-admin");
         std::this_thread::sleep_for(20ms))
        blocked = blocked_by_thread(proxy.pid());
    ASSERT_TRUE(blocked.count("halfpipe")) << "no main thread";
    for (const char* name : {"halfpipe-w0", "halfpipe-w1", "halfpipe-admin", "halfpipe-dns"}) {
        ASSERT_TRUE(blocked.count(name)) << name << " not running\n" << log_of(proxy);
        for (int signo : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1})
            EXPECT_TRUE(blocks(blocked[name], signo)) << name << " takes signal " << signo;
        EXPECT_FALSE(blocks(blocked[name], SIGSEGV)) << name << ": a fault must still reach the faulting thread";
    }
    for (int signo : {SIGTERM, SIGINT, SIGHUP, SIGCHLD})
        EXPECT_FALSE(blocks(blocked["halfpipe"], signo)) << "the control thread holds back signal " << signo;

    // And the control thread does take them: SIGTERM drains and ends the process.
    p = relay_pair{};
    proxy.proc().send_signal(SIGTERM);
    auto status = proxy.proc().wait_exit(10s);
    ASSERT_TRUE(status) << log_of(proxy);
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << log_of(proxy);
}

}  // namespace
}  // namespace it
