#pragma once
// What every worker shares about one configured listener: its config, the
// resolved addresses, and the live-connection count behind max_connections.
#include <atomic>
#include <cstddef>
#include <optional>
#include <vector>

#include "common/net.hpp"
#include "config/config.hpp"
#include "server/metrics/proxy_metrics.hpp"

namespace halfpipe {

struct listener_runtime {
    const config::listener_config& cfg;
    std::size_t index;
    std::vector<tcp::endpoint> bound;                // actual addresses, ports filled in
    std::vector<tcp::endpoint> upstream_literal;     // set when the upstream host is an IP literal
    std::optional<net::ip::address> source_address;  // parsed upstream.source_address
    std::atomic<std::size_t> live{0};
    listener_metrics& metrics;

    listener_runtime(const config::listener_config& c, std::size_t i, listener_metrics& m)
        : cfg(c), index(i), metrics(m) {}
};

}  // namespace halfpipe
