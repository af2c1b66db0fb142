#pragma once
// Private to the config layer: typed access to YAML nodes in which every error
// names the source, the 1-based line and the full key path of the offending value.
#include <yaml-cpp/yaml.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace halfpipe::config::yaml {

// A node and where it came from.
struct located {
    YAML::Node node;
    std::string path;  // e.g. "listeners[0].timeouts.idle"; empty for the document root
    int line = 1;      // 1-based; for a map value, the line of its key
};

class reader;

// The entries of one YAML map, checked against the keys the schema knows.
class map_view {
public:
    std::optional<located> find(std::string_view key) const;
    located require(std::string_view key) const;  // fails naming the missing key

private:
    friend class reader;
    map_view(const reader& owner, located self) : owner_(&owner), self_(std::move(self)) {}

    const reader* owner_;
    located self_;
    std::vector<std::pair<std::string, located>> entries_;
};

class reader {
public:
    explicit reader(std::string source) : source_(std::move(source)) {}

    [[noreturn]] void fail(const located& at, const std::string& message) const;
    [[noreturn]] void fail(int line, const std::string& path, const std::string& message) const;

    // Rejects anything but a map, keys outside `known`, and keys given twice.
    map_view map(const located& at, std::initializer_list<std::string_view> known) const;
    // Each element carries its own line and "path[i]".
    std::vector<located> sequence(const located& at, std::string_view what) const;

    bool is_scalar(const located& at) const;
    bool is_off(const located& at) const;  // the scalar "off"

    std::string string(const located& at, std::string_view what) const;
    bool boolean(const located& at) const;
    long long integer(const located& at, long long min, long long max) const;
    std::optional<duration> duration_value(const located& at, bool allow_off) const;  // nullopt only for off
    std::size_t size(const located& at, std::size_t min, std::size_t max) const;
    host_port address(const located& at, bool require_ip_literal) const;

private:
    [[noreturn]] void wrong_type(const located& at, std::string_view what) const;

    std::string source_;
};

}  // namespace halfpipe::config::yaml
