#include "config/yaml_reader.hpp"

#include <algorithm>
#include <charconv>

namespace halfpipe::config::yaml {
namespace {

std::string child_path(const std::string& parent, std::string_view key) {
    return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

// Nodes built by the parser carry a mark; a null value's mark points past its key,
// often to the next line, so callers pass the line they would rather blame.
int line_of(const YAML::Node& node, int fallback) {
    const auto mark = node.Mark();
    return mark.line >= 0 ? mark.line + 1 : fallback;
}

std::string_view kind_of(const YAML::Node& node) {
    switch (node.Type()) {
        case YAML::NodeType::Map: return "a map";
        case YAML::NodeType::Sequence: return "a list";
        case YAML::NodeType::Scalar: return "a value";
        case YAML::NodeType::Null:
        case YAML::NodeType::Undefined: break;
    }
    return "nothing";
}

std::string describe(std::string_view text) {
    // Keep one bad value from flooding the message with a multi-line block scalar.
    constexpr std::size_t max_shown = 60;
    std::string shown(text.substr(0, max_shown));
    if (text.size() > max_shown) shown += "...";
    return "\"" + shown + "\"";
}

// Limits read best in the units the user writes them in.
std::string format_size(std::size_t bytes) {
    constexpr std::pair<std::size_t, const char*> units[] = {
        {std::size_t{1} << 30, "GiB"}, {std::size_t{1} << 20, "MiB"}, {std::size_t{1} << 10, "KiB"}};
    for (const auto& [unit, suffix] : units)
        if (bytes >= unit && bytes % unit == 0) return std::to_string(bytes / unit) + suffix;
    return std::to_string(bytes);
}

}  // namespace

std::optional<located> map_view::find(std::string_view key) const {
    for (const auto& [name, value] : entries_)
        if (name == key) return value;
    return std::nullopt;
}

located map_view::require(std::string_view key) const {
    if (auto value = find(key)) return *value;
    owner_->fail(self_.line, child_path(self_.path, key), "required key is missing");
}

void reader::fail(int line, const std::string& path, const std::string& message) const {
    std::string text = source_ + ":" + std::to_string(line) + ": ";
    if (!path.empty()) text += path + ": ";
    throw config_error(text + message);
}

void reader::fail(const located& at, const std::string& message) const { fail(at.line, at.path, message); }

void reader::wrong_type(const located& at, std::string_view what) const {
    std::string got(kind_of(at.node));
    if (at.node.IsScalar()) got = describe(at.node.Scalar());
    fail(at, "expected " + std::string(what) + ", got " + got);
}

map_view reader::map(const located& at, std::initializer_list<std::string_view> known) const {
    if (!at.node.IsMap()) wrong_type(at, "a map");
    map_view view(*this, at);
    for (auto it = at.node.begin(); it != at.node.end(); ++it) {
        const int key_line = line_of(it->first, at.line);
        if (!it->first.IsScalar())
            fail(key_line, at.path, "map keys must be plain names, got " + std::string(kind_of(it->first)));
        const std::string key = it->first.Scalar();
        const std::string path = child_path(at.path, key);
        if (view.find(key)) fail(key_line, path, "key is given twice");
        if (std::find(known.begin(), known.end(), key) == known.end()) {
            std::string known_list;
            for (const auto name : known) known_list += (known_list.empty() ? "" : ", ") + std::string(name);
            // A file that is not a config at all would otherwise be echoed back line by line.
            const std::string shown = key.size() > 60 ? child_path(at.path, key.substr(0, 60)) + "..." : path;
            fail(key_line, shown, "unknown key (expected one of: " + known_list + ")");
        }
        view.entries_.emplace_back(key, located{it->second, path, key_line});
    }
    return view;
}

std::vector<located> reader::sequence(const located& at, std::string_view what) const {
    if (!at.node.IsSequence()) wrong_type(at, what);
    std::vector<located> items;
    std::size_t index = 0;
    for (const auto& item : at.node) {
        items.push_back({item, at.path + "[" + std::to_string(index) + "]", line_of(item, at.line)});
        ++index;
    }
    return items;
}

bool reader::is_scalar(const located& at) const { return at.node.IsScalar(); }

bool reader::is_off(const located& at) const { return at.node.IsScalar() && at.node.Scalar() == "off"; }

std::string reader::string(const located& at, std::string_view what) const {
    if (!at.node.IsScalar()) wrong_type(at, what);
    return at.node.Scalar();
}

bool reader::boolean(const located& at) const {
    const auto text = string(at, "true or false");
    // YAML 1.2 core spellings, plus on/off to match the rest of this schema.
    if (text == "true" || text == "True" || text == "TRUE" || text == "on") return true;
    if (text == "false" || text == "False" || text == "FALSE" || text == "off") return false;
    fail(at, "expected true or false, got " + describe(text));
}

long long reader::integer(const located& at, long long min, long long max) const {
    const auto text = string(at, "an integer");
    long long value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    const bool whole = ec == std::errc{} && end == text.data() + text.size() && !text.empty();
    if (ec == std::errc::result_out_of_range || (whole && (value < min || value > max)))
        fail(at, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + text);
    if (!whole) fail(at, "expected an integer, got " + describe(text));
    return value;
}

std::optional<duration> reader::duration_value(const located& at, bool allow_off) const {
    const auto text = string(at, allow_off ? "a duration or off" : "a duration");
    std::optional<duration> value;
    try {
        value = parse_duration(text, allow_off);
    } catch (const config_error& e) {
        fail(at, e.what());
    }
    return value;
}

std::size_t reader::size(const located& at, std::size_t min, std::size_t max) const {
    const auto text = string(at, "a size");
    std::size_t value = 0;
    try {
        value = parse_size(text);
    } catch (const config_error& e) {
        fail(at, e.what());
    }
    if (value < min || value > max)
        fail(at, "must be between " + format_size(min) + " and " + format_size(max) + ", got " + text);
    return value;
}

host_port reader::address(const located& at, bool require_ip_literal) const {
    // Unquoted, [::1]:8080 inside a flow list reads as the map {[::1]: 8080}, and
    // [::1] alone as a list: both are almost surely an IPv6 address missing quotes.
    const bool looks_like_bare_ipv6 =
        at.node.IsSequence() || (at.node.IsMap() && at.node.size() == 1 && at.node.begin()->first.IsSequence());
    if (looks_like_bare_ipv6) {
        fail(at, "expected a host:port address, got " + std::string(kind_of(at.node)) +
                     " (IPv6 addresses must be quoted in YAML, e.g. \"[::1]:8080\")");
    }
    const auto text = string(at, "a host:port address");
    try {
        return parse_host_port(text, require_ip_literal);
    } catch (const config_error& e) {
        fail(at, e.what());
    }
}

}  // namespace halfpipe::config::yaml
