#pragma once
// Private to the config layer: the syntax check of one destination-ACL rule.
#include <optional>
#include <string>

#include "config/config.hpp"

namespace halfpipe::config {

// nullopt when the rule is well formed, else why not.
std::optional<std::string> check_acl_rule(const acl_rule& rule);

}  // namespace halfpipe::config
