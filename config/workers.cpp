#include "config/workers.hpp"

#include <algorithm>
#include <thread>

namespace halfpipe::config {

unsigned resolve_workers(unsigned requested) noexcept {
    if (requested != 0) return requested;
    const unsigned cores = std::thread::hardware_concurrency();
    // Beyond max_workers a machine gets no more than a config file could ask for.
    return std::clamp(cores, 1u, max_workers);
}

}  // namespace halfpipe::config
