#pragma once
// When halfpipe itself ends a connection for lack of progress: the nearest of the
// idle, half-close and lifetime deadlines. Pure, so the policy is unit-tested.
#include <chrono>
#include <optional>
#include <string_view>

#include "config/config.hpp"

namespace halfpipe {

struct relay_clock_marks {
    std::chrono::steady_clock::time_point started;
    std::chrono::steady_clock::time_point last_activity;
    std::optional<std::chrono::steady_clock::time_point> half_closed_since;  // first FIN passed on
};

struct relay_deadline {
    std::chrono::steady_clock::time_point when = std::chrono::steady_clock::time_point::max();
    std::string_view reason;  // idle_timeout, half_close_timeout, max_lifetime; empty when none
};

// The half-close timeout counts from the later of the first FIN and the last byte:
// the direction still open may keep the connection alive by moving bytes.
inline relay_deadline next_deadline(const config::timeouts_config& t, const relay_clock_marks& m) {
    relay_deadline next;
    auto consider = [&](std::chrono::steady_clock::time_point when, std::string_view why) {
        if (when < next.when) next = {when, why};
    };
    if (t.idle) consider(m.last_activity + *t.idle, "idle_timeout");
    if (t.half_close && m.half_closed_since)
        consider(std::max(*m.half_closed_since, m.last_activity) + *t.half_close, "half_close_timeout");
    if (t.max_lifetime) consider(m.started + *t.max_lifetime, "max_lifetime");
    return next;
}

}  // namespace halfpipe
