#pragma once
// Names the calling thread (at most 15 characters, Linux's limit; longer is cut), so
// that `top -H`, `ps -L` and /proc/PID/task/*/comm tell the relay workers from the
// admin endpoint, the password checks and the name lookups.
#include <string_view>

namespace halfpipe {

void name_this_thread(std::string_view name) noexcept;

}  // namespace halfpipe
