#pragma once
// The command line: which config to run (file, quick form or built-in) and the
// flags that override it. Knows nothing of sockets.
#include <string>

#include "config/config.hpp"

namespace halfpipe {

struct cli_result {
    enum class action { run, exit };
    action what = action::run;
    int exit_code = 0;
    config::config cfg;
    std::string source;  // where the config came from, for the start-up log
};

// Prints --help/--version/--check results and errors itself; `exit` means return exit_code.
cli_result parse_cli(int argc, char** argv);

}  // namespace halfpipe
