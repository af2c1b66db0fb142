#include "server/cli.hpp"

#include <boost/program_options.hpp>
#include <iostream>

#include "config/users_file.hpp"

namespace halfpipe {

namespace po = boost::program_options;

namespace {

po::options_description describe() {
    po::options_description options("halfpipe " HALFPIPE_VERSION " — TCP proxy with exact close semantics\n\nOptions");
    // clang-format off
    options.add_options()
        ("help,h", "show this help and exit")
        ("version", "print the version and exit")
        ("config,c", po::value<std::string>(), "YAML config file (see config/halfpipe.example.yaml)")
        ("check", "with --config: validate the file, print the result, exit 0 (valid) or 1")
        ("hash-password", "read a password from standard input, print its hash for an auth users file")
        ("listen", po::value<std::string>(), "quick form: listen address, e.g. 127.0.0.1:8080 or [::1]:8080")
        ("upstream", po::value<std::string>(), "quick form: upstream address, host:port")
        ("mode", po::value<std::string>(), "quick form: reverse (default, needs --upstream), connect or socks5")
        ("admin", po::value<std::string>(), "admin endpoint address, or off")
        ("workers", po::value<unsigned>(), "worker threads (0 = one per core)")
        ("cpu-affinity", po::value<std::string>(), "off, or spread: worker i stays on the i-th allowed CPU")
        ("drain-timeout", po::value<std::string>(), "how long live connections may finish after SIGTERM, e.g. 30s")
        ("resolve-timeout", po::value<std::string>(), "bound on a host-name lookup, e.g. 5s, or off (resolv.conf's)")
        ("connect-timeout", po::value<std::string>(), "upstream connect timeout, every listener")
        ("idle-timeout", po::value<std::string>(), "idle timeout (or off), every listener")
        ("half-close-timeout", po::value<std::string>(), "half-close timeout (or off), every listener")
        ("max-connections", po::value<std::size_t>(), "max concurrent connections per listener")
        ("relay", po::value<std::string>(), "how bytes pass, every listener: copy or splice (splice(2), zero-copy)");
    // clang-format on
    return options;
}

std::string text(const po::variables_map& vm, const char* key) { return vm[key].as<std::string>(); }

// A bad flag is reported like a bad config key: named, so the user knows what to fix.
std::optional<config::duration> flag_duration(const po::variables_map& vm, const char* key, bool allow_off) {
    try {
        return config::parse_duration(text(vm, key), allow_off);
    } catch (const config::config_error& e) {
        throw config::config_error(std::string("--") + key + ": " + e.what());
    }
}

config::host_port flag_address(const po::variables_map& vm, const char* key) {
    try {
        return config::parse_host_port(text(vm, key), true);
    } catch (const config::config_error& e) {
        throw config::config_error(std::string("--") + key + ": " + e.what());
    }
}

// Flags are checked as strictly as the keys they override.
void apply_overrides(const po::variables_map& vm, config::config& cfg) {
    if (vm.count("admin")) {
        cfg.admin = text(vm, "admin") == "off" ? std::nullopt : std::optional(flag_address(vm, "admin"));
        for (const auto& l : cfg.listeners)
            for (const auto& bind : l.bind)
                if (cfg.admin && cfg.admin->port != 0 && *cfg.admin == bind)
                    throw config::config_error("--admin: " + bind.to_string() + " is already bound by listener " +
                                               l.name);
    }
    if (vm.count("workers")) {
        auto n = vm["workers"].as<unsigned>();
        if (n > config::max_workers)
            throw config::config_error("--workers: at most " + std::to_string(config::max_workers));
        cfg.workers = config::resolve_workers(n);
    }
    if (vm.count("cpu-affinity")) {
        auto affinity = config::parse_cpu_affinity(text(vm, "cpu-affinity"));
        if (!affinity)
            throw config::config_error("--cpu-affinity: expected off or spread, got \"" + text(vm, "cpu-affinity") +
                                       "\"");
        cfg.cpu_affinity = *affinity;
    }
    if (vm.count("max-connections") && vm["max-connections"].as<std::size_t>() == 0)
        throw config::config_error("--max-connections: must be at least 1");
    if (vm.count("drain-timeout")) cfg.drain_timeout = *flag_duration(vm, "drain-timeout", false);
    if (vm.count("resolve-timeout")) cfg.resolve_timeout = flag_duration(vm, "resolve-timeout", true);
    std::optional<config::relay_mode> relay;
    if (vm.count("relay")) {
        relay = config::parse_relay_mode(text(vm, "relay"));
        if (!relay) throw config::config_error("--relay: expected copy or splice, got \"" + text(vm, "relay") + "\"");
    }
    for (auto& l : cfg.listeners) {
        if (vm.count("connect-timeout")) l.timeouts.connect = *flag_duration(vm, "connect-timeout", false);
        if (vm.count("idle-timeout")) l.timeouts.idle = flag_duration(vm, "idle-timeout", true);
        if (vm.count("half-close-timeout")) l.timeouts.half_close = flag_duration(vm, "half-close-timeout", true);
        if (vm.count("max-connections")) l.max_connections = vm["max-connections"].as<std::size_t>();
        if (relay) l.relay = *relay;
    }
}

cli_result exit_with(int code) {
    cli_result r;
    r.what = cli_result::action::exit;
    r.exit_code = code;
    return r;
}

// One line, without its line break: `echo secret | halfpipe --hash-password`.
cli_result hash_password_from_stdin() {
    std::string password;
    if (!std::getline(std::cin, password) || password.empty()) {
        std::cerr << "halfpipe: --hash-password: expected a non-empty password on standard input\n";
        return exit_with(2);
    }
    if (!password.empty() && password.back() == '\r') password.pop_back();
    try {
        std::cout << config::hash_password(password) << "\n";
    } catch (const config::config_error& e) {
        std::cerr << "halfpipe: --hash-password: " << e.what() << "\n";
        return exit_with(1);
    }
    return exit_with(0);
}

}  // namespace

cli_result parse_cli(int argc, char** argv) {
    auto options = describe();
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(argc, argv).options(options).run(), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        std::cerr << "halfpipe: " << e.what() << "\n(try --help)\n";
        return exit_with(2);
    }
    if (vm.count("help")) {
        std::cout << options << "\nWith neither --config nor --listen, halfpipe runs its built-in config:\n"
                  << "  127.0.0.1:8080 -> 127.0.0.1:9000, admin on 127.0.0.1:9901.\n"
                  << "\nSignals: SIGTERM/SIGINT drain and exit (a second one resets what is left);\n"
                  << "SIGHUP reloads: a successor started with the same arguments takes over the\n"
                  << "listeners, then this process drains.\n";
        return exit_with(0);
    }
    if (vm.count("version")) {
        std::cout << "halfpipe " HALFPIPE_VERSION "\n";
        return exit_with(0);
    }
    if (vm.count("hash-password")) return hash_password_from_stdin();
    const auto mode = vm.count("mode") ? config::parse_listener_mode(text(vm, "mode")) : config::listener_mode::reverse;
    if (!mode) {
        std::cerr << "halfpipe: --mode: expected reverse, connect or socks5\n";
        return exit_with(2);
    }
    const bool forward = *mode != config::listener_mode::reverse;
    if ((vm.count("mode") && !vm.count("listen")) || (forward && vm.count("upstream")) ||
        (!forward && vm.count("listen") != vm.count("upstream"))) {
        std::cerr << "halfpipe: use --listen with --upstream, or --listen with --mode connect|socks5\n";
        return exit_with(2);
    }
    if (vm.count("listen") && vm.count("config")) {
        std::cerr << "halfpipe: use either --config or --listen/--upstream\n";
        return exit_with(2);
    }
    if (vm.count("check") && !vm.count("config")) {
        std::cerr << "halfpipe: --check needs --config FILE\n";
        return exit_with(2);
    }

    cli_result r;
    try {
        if (vm.count("config")) {
            r.source = text(vm, "config");
            r.cfg = config::load_file(r.source);
        } else if (vm.count("listen")) {
            r.source = "command line";
            r.cfg = forward ? config::quick_forward_config(text(vm, "listen"), *mode)
                            : config::quick_config(text(vm, "listen"), text(vm, "upstream"));
        } else {
            r.source = "built-in default";
            r.cfg = config::default_config();
        }
        apply_overrides(vm, r.cfg);
    } catch (const config::config_error& e) {
        std::cerr << "halfpipe: invalid configuration: " << e.what() << "\n";
        return exit_with(vm.count("check") ? 1 : 2);
    }
    if (vm.count("check")) {
        std::cout << r.source << ": configuration is valid (" << r.cfg.listeners.size() << " listener"
                  << (r.cfg.listeners.size() == 1 ? "" : "s") << ")\n";
        return exit_with(0);
    }
    return r;
}

}  // namespace halfpipe
