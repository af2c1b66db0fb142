#pragma once
// Keeps a worker thread on one CPU (config cpu_affinity: spread).
#include <optional>
#include <vector>

namespace halfpipe {

// The CPUs this process may run on (its affinity mask: a cpuset or taskset may
// leave fewer than the machine has), in ascending order; empty when unknown.
std::vector<int> allowed_cpus();

// The CPU for worker `index` of a spread: the index-th allowed CPU, wrapping round.
std::optional<int> spread_cpu(const std::vector<int>& allowed, std::size_t index) noexcept;

// Binds the calling thread to `cpu`; false when the kernel refused.
bool bind_this_thread(int cpu) noexcept;

}  // namespace halfpipe
