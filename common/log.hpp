#pragma once
// One logger for the process: logfmt lines on stdout, one write per line so that
// a supervisor or a test reading the pipe sees each event as it happens.
#include <spdlog/spdlog.h>

namespace halfpipe::log {

void init();
spdlog::logger& get();

}  // namespace halfpipe::log
