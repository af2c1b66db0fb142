#pragma once
#include <sys/resource.h>

namespace halfpipe {

// Raises the soft RLIMIT_NOFILE to the hard limit (each relayed connection holds two
// descriptors) and returns the limit now in force.
rlim_t raise_fd_limit() noexcept;

}  // namespace halfpipe
