// Configs that come from no file: the built-in default and the --listen/--upstream form.
#include "config/bind_claims.hpp"
#include "config/config.hpp"
#include "config/workers.hpp"

namespace halfpipe::config {
namespace {

// Errors from the shared parsers name no option; the command line needs it named.
host_port parse_option(const std::string& option, const std::string& text, bool require_ip_literal) {
    try {
        return parse_host_port(text, require_ip_literal);
    } catch (const config_error& e) {
        throw config_error(option + ": " + e.what());
    }
}

config single_listener(host_port bind, host_port upstream) {
    config result;
    result.workers = resolve_workers(0);
    listener_config listener;
    listener.name = "default";
    listener.bind.push_back(std::move(bind));
    listener.upstream.address = std::move(upstream);
    result.listeners.push_back(std::move(listener));
    return result;
}

void check_listen_is_free(const config& result) {
    bind_claims claims;
    if (result.admin) claims.claim(*result.admin, "the admin address");
    if (auto owner = claims.claim(result.listeners.front().bind.front(), "--listen"))
        throw config_error("--listen: " + result.listeners.front().bind.front().to_string() + " is already " + *owner);
}

}  // namespace

config default_config() { return single_listener({"127.0.0.1", 8080}, {"127.0.0.1", 9000}); }

config quick_config(const std::string& listen, const std::string& upstream) {
    auto bind = parse_option("--listen", listen, true);
    auto target = parse_option("--upstream", upstream, false);
    if (target.port == 0) throw config_error("--upstream: port 0 is not allowed for an upstream (expected 1..65535)");

    auto result = single_listener(std::move(bind), std::move(target));
    check_listen_is_free(result);
    return result;
}

config quick_forward_config(const std::string& listen, listener_mode mode) {
    auto result = single_listener(parse_option("--listen", listen, true), {});
    result.listeners.front().mode = mode;  // an empty acl: loopback destinations only
    check_listen_is_free(result);
    return result;
}

std::string_view to_string(listener_mode mode) noexcept {
    switch (mode) {
        case listener_mode::reverse: return "reverse";
        case listener_mode::connect: return "connect";
        case listener_mode::socks5: return "socks5";
    }
    return "unknown";
}

std::optional<listener_mode> parse_listener_mode(std::string_view text) noexcept {
    for (auto mode : {listener_mode::reverse, listener_mode::connect, listener_mode::socks5})
        if (text == to_string(mode)) return mode;
    return std::nullopt;
}

std::string_view to_string(relay_mode mode) noexcept {
    switch (mode) {
        case relay_mode::copy: return "copy";
        case relay_mode::splice: return "splice";
    }
    return "unknown";
}

std::optional<relay_mode> parse_relay_mode(std::string_view text) noexcept {
    for (auto mode : {relay_mode::copy, relay_mode::splice})
        if (text == to_string(mode)) return mode;
    return std::nullopt;
}

std::string_view to_string(cpu_affinity affinity) noexcept {
    switch (affinity) {
        case cpu_affinity::off: return "off";
        case cpu_affinity::spread: return "spread";
    }
    return "unknown";
}

std::optional<cpu_affinity> parse_cpu_affinity(std::string_view text) noexcept {
    for (auto affinity : {cpu_affinity::off, cpu_affinity::spread})
        if (text == to_string(affinity)) return affinity;
    return std::nullopt;
}

}  // namespace halfpipe::config
