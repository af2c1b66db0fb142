#pragma once
#include "config/config.hpp"

namespace halfpipe {

// Binds every listener on every worker, runs until SIGTERM/SIGINT, drains, and
// returns the process exit code. Throws std::system_error if a bind fails.
int run_proxy(const config::config& cfg);

}  // namespace halfpipe
