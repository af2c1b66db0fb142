// The YAML schema: which keys exist, what each may hold, and how listeners may
// not collide. See halfpipe.example.yaml for the documented form.
#include <filesystem>
#include <limits>
#include <sstream>

#include "config/acl_check.hpp"
#include "config/bind_claims.hpp"
#include "config/text_file.hpp"
#include "config/users_file.hpp"
#include "config/workers.hpp"
#include "config/yaml_reader.hpp"

namespace halfpipe::config {
namespace {

using yaml::located;
using yaml::reader;

constexpr std::size_t min_buffer_size = 1 << 10;
constexpr std::size_t max_buffer_size = 16 << 20;
constexpr long long max_backlog = 65535;
// The kernel's own ceilings (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT):
// checking here turns a setsockopt failure at accept time into a config error.
constexpr long long max_keepalive_seconds = 32767;
constexpr long long max_keepalive_probes = 127;

bool is_valid_listener_name(const std::string& name) {
    if (name.empty()) return false;
    for (const char c : name) {
        const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && c != '_' && c != '.' && c != '-') return false;
    }
    return true;
}

close_kind read_close_kind(const reader& r, const located& at, bool allow_fin) {
    const char* const expected = allow_fin ? "rst, fin or close" : "rst or close";
    const auto text = r.string(at, expected);
    const auto kind = parse_close_kind(text);
    if (!kind) r.fail(at, "expected " + std::string(expected) + ", got \"" + text + "\"");
    if (*kind == close_kind::graceful_fin && !allow_fin) {
        // A client that sees a clean EOF would take the failed connect for an empty reply.
        r.fail(at, "fin is not allowed here (the client must see the failure); expected rst or close");
    }
    return *kind;
}

std::chrono::seconds read_keepalive_seconds(const reader& r, const located& at) {
    const auto value = *r.duration_value(at, false);
    if (value.count() % 1000 != 0) r.fail(at, "must be a whole number of seconds (TCP keepalive has 1s granularity)");
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(value);
    if (seconds.count() > max_keepalive_seconds)
        r.fail(at, "must be at most " + std::to_string(max_keepalive_seconds) + "s");
    return seconds;
}

std::optional<keepalive_config> read_keepalive(const reader& r, const located& at) {
    if (r.is_off(at)) return std::nullopt;
    if (r.is_scalar(at)) r.fail(at, "expected a map {idle, interval, probes} or off, got \"" + at.node.Scalar() + "\"");
    const auto m = r.map(at, {"idle", "interval", "probes"});
    keepalive_config keepalive;
    if (auto f = m.find("idle")) keepalive.idle = read_keepalive_seconds(r, *f);
    if (auto f = m.find("interval")) keepalive.interval = read_keepalive_seconds(r, *f);
    if (auto f = m.find("probes")) keepalive.probes = static_cast<int>(r.integer(*f, 1, max_keepalive_probes));
    return keepalive;
}

timeouts_config read_timeouts(const reader& r, const located& at) {
    const auto m = r.map(at, {"connect", "idle", "half_close", "max_lifetime", "rst_flush", "handshake",
                                 "lingering_close"});
    timeouts_config timeouts;
    if (auto f = m.find("connect")) timeouts.connect = *r.duration_value(*f, false);
    if (auto f = m.find("idle")) timeouts.idle = r.duration_value(*f, true);
    if (auto f = m.find("half_close")) timeouts.half_close = r.duration_value(*f, true);
    if (auto f = m.find("max_lifetime")) timeouts.max_lifetime = r.duration_value(*f, true);
    if (auto f = m.find("rst_flush")) timeouts.rst_flush = *r.duration_value(*f, false);
    if (auto f = m.find("handshake")) timeouts.handshake = *r.duration_value(*f, false);
    if (auto f = m.find("lingering_close")) {
        timeouts.lingering_close = r.duration_value(*f, true);
        // RFC 1928: a SOCKS server closes within 10 s of a failure.
        if (timeouts.lingering_close && *timeouts.lingering_close > 10s) r.fail(*f, "at most 10s (or off)");
    }
    return timeouts;
}

upstream_config read_upstream(const reader& r, const located& at) {
    const auto m = r.map(at, {"address", "source_address", "connect_failure"});
    upstream_config upstream;
    const auto address = m.require("address");
    upstream.address = r.address(address, false);
    if (upstream.address.port == 0) r.fail(address, "port 0 is not allowed for an upstream (expected 1..65535)");
    if (auto f = m.find("source_address")) {
        auto source = r.string(*f, "an IP address");
        if (!is_ip_literal(source))
            r.fail(*f, "expected an IP address without port (e.g. 10.0.0.2 or ::1), got \"" + source + "\"");
        upstream.source_address = std::move(source);
    }
    if (auto f = m.find("connect_failure")) upstream.connect_failure = read_close_kind(r, *f, false);
    return upstream;
}

std::vector<host_port> read_binds(const reader& r, const located& at, bind_claims& claims,
                                  const std::string& listener_name) {
    // A single string is the common case; a list is for dual-stack or multi-homed binds.
    std::vector<located> items;
    if (r.is_scalar(at))
        items.push_back(at);
    else
        items = r.sequence(at, "an address or a list of addresses");
    if (items.empty()) r.fail(at, "at least one bind address is required");

    std::vector<host_port> binds;
    for (const auto& item : items) {
        auto address = r.address(item, true);
        if (auto owner = claims.claim(address, item.path + " (listener \"" + listener_name + "\")"))
            r.fail(item, address.to_string() + " is already bound by " + *owner);
        binds.push_back(std::move(address));
    }
    return binds;
}

std::vector<acl_rule> read_acl(const reader& r, const located& at) {
    std::vector<acl_rule> rules;
    for (const auto& item : r.sequence(at, "a list of rules like {allow: 10.0.0.0/8, ports: \"443\"}")) {
        const auto m = r.map(item, {"allow", "deny", "host", "ports"});
        const auto allow = m.find("allow");
        const auto deny = m.find("deny");
        if (bool(allow) == bool(deny)) r.fail(item, "a rule has exactly one of allow or deny");
        acl_rule rule;
        rule.allow = bool(allow);
        // `allow: 10.0.0.0/8` names a CIDR; `allow: any` with host/ports narrows by those alone.
        auto target = r.string(allow ? *allow : *deny, "a CIDR or any");
        if (target != "any") rule.cidr = target;
        if (auto f = m.find("host")) rule.host = r.string(*f, "a host name or *.domain pattern");
        if (auto f = m.find("ports")) rule.ports = r.string(*f, "ports like 443, 80,443 or 1024-65535");
        if (auto problem = check_acl_rule(rule)) r.fail(item, *problem);
        rules.push_back(std::move(rule));
    }
    return rules;
}

auth_config read_auth(const reader& r, const located& at, const std::filesystem::path& base_dir) {
    const auto m = r.map(at, {"users_file", "realm", "cache"});
    auth_config auth;
    const auto file_at = m.require("users_file");
    auth.users_file = r.string(file_at, "a path");
    if (auth.users_file.empty()) r.fail(file_at, "expected the path of a users file");
    std::filesystem::path path(auth.users_file);
    if (path.is_relative()) path = base_dir / path;
    try {
        auth.users = read_users_file(path.string());
    } catch (const config_error& e) {
        r.fail(file_at, e.what());
    }
    if (auto f = m.find("realm")) {
        auth.realm = r.string(*f, "a realm");
        if (auth.realm.empty() || has_control_character(auth.realm))
            r.fail(*f, "a realm is a non-empty string without control characters");
    }
    if (auto f = m.find("cache")) auth.cache = r.duration_value(*f, true);
    return auth;
}

listener_config read_listener(const reader& r, const located& at, const std::vector<listener_config>& earlier,
                              bind_claims& claims, const std::filesystem::path& base_dir) {
    const auto m = r.map(at, {"name", "mode", "acl", "auth", "bind", "upstream", "timeouts", "buffer_size",
                              "relay", "max_connections", "backlog", "tcp_nodelay", "keepalive", "linger"});
    listener_config listener;
    const auto name = m.require("name");
    listener.name = r.string(name, "a name");
    if (!is_valid_listener_name(listener.name))
        r.fail(name, "invalid listener name \"" + listener.name + "\" (use letters, digits, '_', '.' and '-')");
    // Names label metrics and log lines, so two listeners sharing one would be indistinguishable.
    for (std::size_t i = 0; i < earlier.size(); ++i) {
        if (earlier[i].name == listener.name)
            r.fail(name,
                   "duplicate listener name \"" + listener.name + "\" (also listeners[" + std::to_string(i) + "])");
    }
    listener.bind = read_binds(r, m.require("bind"), claims, listener.name);
    if (auto f = m.find("mode")) {
        auto text = r.string(*f, "reverse, connect or socks5");
        auto mode = parse_listener_mode(text);
        if (!mode) r.fail(*f, "expected reverse, connect or socks5, got \"" + text + "\"");
        listener.mode = *mode;
    }
    if (listener.mode == listener_mode::reverse) {
        listener.upstream = read_upstream(r, m.require("upstream"));
        if (auto f = m.find("acl")) r.fail(*f, "acl applies to mode connect or socks5 only");
        if (auto f = m.find("auth")) r.fail(*f, "auth applies to mode connect or socks5 only");
    } else {
        if (auto f = m.find("upstream"))
            r.fail(*f, "a forward listener (mode " + std::string(to_string(listener.mode)) +
                           ") has no upstream: clients name their destination");
        if (auto f = m.find("acl")) listener.acl = read_acl(r, *f);
        if (auto f = m.find("auth")) listener.auth = read_auth(r, *f, base_dir);
    }
    if (auto f = m.find("timeouts")) listener.timeouts = read_timeouts(r, *f);
    if (auto f = m.find("buffer_size")) listener.buffer_size = r.size(*f, min_buffer_size, max_buffer_size);
    if (auto f = m.find("relay")) {
        auto text = r.string(*f, "copy or splice");
        auto mode = parse_relay_mode(text);
        if (!mode) r.fail(*f, "expected copy or splice, got \"" + text + "\"");
        listener.relay = *mode;
    }
    if (auto f = m.find("max_connections")) {
        if (r.is_off(*f))
            listener.max_connections = std::nullopt;
        else
            listener.max_connections = static_cast<std::size_t>(r.integer(*f, 1, std::numeric_limits<int>::max()));
    }
    if (auto f = m.find("backlog")) listener.backlog = static_cast<int>(r.integer(*f, 1, max_backlog));
    if (auto f = m.find("tcp_nodelay")) listener.tcp_nodelay = r.boolean(*f);
    if (auto f = m.find("keepalive")) listener.keepalive = read_keepalive(r, *f);
    if (auto f = m.find("linger")) listener.linger = read_close_kind(r, *f, true);
    return listener;
}

void read_admin(const reader& r, const located& at, bind_claims& claims, config& result) {
    if (r.is_off(at)) {
        result.admin = std::nullopt;
        return;
    }
    if (r.is_scalar(at)) r.fail(at, "expected a map {address, token} or off, got \"" + at.node.Scalar() + "\"");
    const auto m = r.map(at, {"address", "token"});
    const auto address_at = m.require("address");
    auto address = r.address(address_at, true);
    // Nothing was claimed before the admin address, so this records it and cannot fail.
    claims.claim(address, address_at.path);
    result.admin = address;
    if (auto f = m.find("token")) {
        auto token = r.string(*f, "a token");
        if (token.size() < 16) r.fail(*f, "a token must have at least 16 characters");
        result.admin_token = token;
    }
}

config read_config(const reader& r, const located& root, const std::filesystem::path& base_dir) {
    if (root.node.IsNull()) r.fail(root, "the configuration is empty (at least `listeners` is required)");
    const auto m = r.map(root, {"workers", "cpu_affinity", "drain_timeout", "resolve_timeout", "access_log", "admin",
                                  "listeners"});
    config result;
    bind_claims claims;
    if (auto f = m.find("workers")) result.workers = static_cast<unsigned>(r.integer(*f, 0, max_workers));
    result.workers = resolve_workers(result.workers);
    if (auto f = m.find("cpu_affinity")) {
        auto text = r.string(*f, "off or spread");
        auto affinity = parse_cpu_affinity(text);
        if (!affinity) r.fail(*f, "expected off or spread, got \"" + text + "\"");
        result.cpu_affinity = *affinity;
    }
    if (auto f = m.find("drain_timeout")) result.drain_timeout = *r.duration_value(*f, false);
    if (auto f = m.find("resolve_timeout")) result.resolve_timeout = r.duration_value(*f, true);
    if (auto f = m.find("access_log")) result.access_log = r.boolean(*f);
    if (auto f = m.find("admin")) read_admin(r, *f, claims, result);

    const auto listeners_at = m.require("listeners");
    const auto items = r.sequence(listeners_at, "a list of listeners");
    if (items.empty()) r.fail(listeners_at, "at least one listener is required");
    for (const auto& item : items) {
        result.listeners.push_back(read_listener(r, item, result.listeners, claims, base_dir));
    }
    return result;
}

// True when `text` holds something like [::1]:8080 that is not inside quotes.
bool has_bare_bracketed_address(const std::string& text) {
    const auto is_address_char = [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
    };
    for (std::size_t open = text.find('['); open != std::string::npos; open = text.find('[', open + 1)) {
        if (open > 0 && (text[open - 1] == '"' || text[open - 1] == '\'')) continue;
        std::size_t end = open + 1;
        bool has_colon = false;
        for (; end < text.size() && is_address_char(text[end]); ++end) has_colon = has_colon || text[end] == ':';
        if (has_colon && end + 2 < text.size() && text[end] == ']' && text[end + 1] == ':' && text[end + 2] >= '0' &&
            text[end + 2] <= '9')
            return true;
    }
    return false;
}

// The schema's most likely YAML mistake: an unquoted [::1]:8080 opens a flow list,
// and the parser's complaint ("end of map not found") does not say so.
std::string syntax_hint(const std::string& yaml_text, int line) {
    std::istringstream lines(yaml_text);
    std::string text;
    for (int i = 0; i < line && std::getline(lines, text); ++i) {
    }
    return has_bare_bracketed_address(text) ? " (IPv6 addresses must be quoted in YAML, e.g. \"[::1]:8080\")" : "";
}

config load_document(const std::string& yaml_text, const std::string& source_name,
                     const std::filesystem::path& base_dir) {
    std::vector<YAML::Node> documents;
    try {
        documents = YAML::LoadAll(yaml_text);
    } catch (const YAML::ParserException& e) {
        const int line = e.mark.line >= 0 ? e.mark.line + 1 : 1;
        throw config_error(source_name + ":" + std::to_string(line) + ": invalid YAML: " + e.msg +
                           syntax_hint(yaml_text, line));
    } catch (const YAML::Exception& e) {
        throw config_error(source_name + ": invalid YAML: " + e.msg);
    }
    const reader r(source_name);
    // A stray trailing "---" yields an empty document; only a second real one is
    // an error, since halfpipe would otherwise silently ignore it.
    for (std::size_t i = 1; i < documents.size(); ++i) {
        if (documents[i].IsNull()) continue;
        const auto mark = documents[i].Mark();
        r.fail(mark.line >= 0 ? mark.line + 1 : 1, "", "expected one YAML document, found several");
    }
    const YAML::Node root = documents.empty() ? YAML::Node() : documents.front();
    const int root_line = root.Mark().line >= 0 ? root.Mark().line + 1 : 1;
    return read_config(r, located{root, "", root_line}, base_dir);
}

}  // namespace

config load_string(const std::string& yaml_text, const std::string& source_name) {
    return load_document(yaml_text, source_name, {});
}

config load_file(const std::string& path) {
    return load_document(read_text_file(path), path, std::filesystem::path(path).parent_path());
}

}  // namespace halfpipe::config
