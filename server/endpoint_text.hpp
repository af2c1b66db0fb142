#pragma once
#include <string>

#include "common/net.hpp"

namespace halfpipe {

// "127.0.0.1:80", "[::1]:80": the one spelling of an endpoint in logs, JSON and labels.
inline std::string endpoint_text(const tcp::endpoint& ep) {
    auto host = ep.address().to_string();
    if (ep.address().is_v6()) host = "[" + host + "]";
    return host + ":" + std::to_string(ep.port());
}

}  // namespace halfpipe
