#pragma once
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace halfpipe {

// What a reload needs to know of this process (see successor.hpp).
struct process_context {
    std::vector<std::string> command;  // how to start a successor
    std::optional<int> ready_fd;       // this process is a successor: tell the predecessor here
};

// Binds every listener on every worker, runs until SIGTERM/SIGINT (or a SIGHUP
// handover), drains, and returns the process exit code. Throws std::system_error if
// a bind fails.
int run_proxy(const config::config& cfg, const process_context& process);

}  // namespace halfpipe
