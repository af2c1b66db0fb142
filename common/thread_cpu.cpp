#include "common/thread_cpu.hpp"

#include <pthread.h>
#include <sched.h>

namespace halfpipe {

std::vector<int> allowed_cpus() {
    std::vector<int> cpus;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
        if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    return cpus;
}

std::optional<int> spread_cpu(const std::vector<int>& allowed, std::size_t index) noexcept {
    if (allowed.empty()) return std::nullopt;
    return allowed[index % allowed.size()];
}

bool bind_this_thread(int cpu) noexcept {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set) == 0;
}

}  // namespace halfpipe
