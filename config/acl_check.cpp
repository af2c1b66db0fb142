#include "config/acl_check.hpp"

#include <stdexcept>

#include "common/destination/destination_acl.hpp"

namespace halfpipe::config {

// The one parser of rules: the server builds its ACL with the same function, so a
// config that loads is a config that runs.
std::optional<std::string> check_acl_rule(const acl_rule& rule) {
    try {
        forward::parse_rule(rule.allow ? "allow" : "deny", rule.cidr, rule.host, rule.ports);
        return std::nullopt;
    } catch (const std::invalid_argument& e) {
        return std::string(e.what());
    }
}

}  // namespace halfpipe::config
