#include "common/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>

namespace halfpipe::log {

namespace {
std::shared_ptr<spdlog::logger>& instance() {
    static std::shared_ptr<spdlog::logger> logger = [] {
        auto l = std::make_shared<spdlog::logger>("halfpipe", std::make_shared<spdlog::sinks::stdout_sink_mt>());
        // pid=: after a reload two processes write to one stream (the successor inherits
        // it, and journald files it under the PID that opened it).
        l->set_pattern("ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l pid=%P %v", spdlog::pattern_time_type::utc);
        l->flush_on(spdlog::level::trace);
        return l;
    }();
    return logger;
}
}  // namespace

void init() { instance(); }

spdlog::logger& get() { return *instance(); }

}  // namespace halfpipe::log
