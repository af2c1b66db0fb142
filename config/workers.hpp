#pragma once
// Private to the config layer: every way of building a config resolves workers the same way.

namespace halfpipe::config {

inline constexpr unsigned max_workers = 1024;

// 0 → one worker per core (at least one, as hardware_concurrency() may not know).
unsigned resolve_workers(unsigned requested) noexcept;

}  // namespace halfpipe::config
