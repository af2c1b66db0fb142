// cpu_affinity: spread keeps worker i on the i-th CPU the process may use; off (the
// default) leaves the workers where the kernel puts them.
#include <gtest/gtest.h>

#include <sched.h>

#include <map>
#include <thread>

#include "test_util.hpp"

namespace it {
namespace {

// Thread name → the CPUs it may run on, as /proc shows them ("0-1", "1").
std::map<std::string, std::string> cpus_by_thread(pid_t pid) { return status_field_by_thread(pid, "Cpus_allowed_list"); }

std::vector<int> cpus_of_this_process() {
    std::vector<int> cpus;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0)
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
            if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    return cpus;
}

// The workers bind themselves as their threads start, just after the listening line.
std::map<std::string, std::string> settled_cpus(pid_t pid, const std::string& w0, const std::string& w1) {
    auto cpus = cpus_by_thread(pid);
    for (const auto deadline = clock::now() + 3s; clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
        if (cpus["halfpipe-w0"] == w0 && cpus["halfpipe-w1"] == w1) break;
        cpus = cpus_by_thread(pid);
    }
    return cpus;
}

TEST(CpuAffinity, SpreadKeepsEachWorkerOnACpuOfItsOwn) {
    const auto allowed = cpus_of_this_process();
    if (allowed.size() < 2) GTEST_SKIP() << "fewer than two CPUs to spread over";
    upstream server;
    halfpipe proxy({.upstream = server.address(), .extra = {"--workers", "2", "--cpu-affinity", "spread"}});
    const auto w0 = std::to_string(allowed[0]), w1 = std::to_string(allowed[1]);
    auto cpus = settled_cpus(proxy.pid(), w0, w1);
    EXPECT_EQ(cpus["halfpipe-w0"], w0) << log_of(proxy);
    EXPECT_EQ(cpus["halfpipe-w1"], w1) << log_of(proxy);
    EXPECT_NE(cpus["halfpipe"], w0) << "the main thread keeps every CPU";
    EXPECT_TRUE(proxy.wait_for_line("event=starting .* cpu_affinity=spread ", 1s)) << log_of(proxy);

    for (int i = 0; i < 4; ++i) {  // both workers relay (SO_REUSEPORT spreads the connections)
        relay_pair p;
        ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);
        EXPECT_TRUE(round_trip(p.client.get(), p.up.get(), "ping", "pong")) << log_of(proxy);
    }
}

TEST(CpuAffinity, OffLeavesTheWorkersOnEveryCpu) {
    upstream server;
    halfpipe proxy({.upstream = server.address(), .extra = {"--workers", "2"}});
    std::this_thread::sleep_for(200ms);
    auto cpus = cpus_by_thread(proxy.pid());
    ASSERT_FALSE(cpus["halfpipe"].empty());
    EXPECT_EQ(cpus["halfpipe-w0"], cpus["halfpipe"]);
    EXPECT_EQ(cpus["halfpipe-w1"], cpus["halfpipe"]);
}

}  // namespace
}  // namespace it
