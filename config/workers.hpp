#pragma once
// Private to the config layer: every way of building a config resolves workers the same way.

#include "config/config.hpp"

namespace halfpipe::config {

// max_workers and resolve_workers are declared in config.hpp: the command line
// resolves --workers the same way.

}  // namespace halfpipe::config
