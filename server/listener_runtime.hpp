#pragma once
// What every worker shares about one configured listener: its config, the
// resolved addresses, and the live-connection count behind max_connections.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

#include "common/net.hpp"
#include "config/config.hpp"
#include "common/destination/destination_acl.hpp"
#include "server/forward/credential_verifier.hpp"
#include "server/password_checks.hpp"
#include "server/metrics/proxy_metrics.hpp"

namespace halfpipe {

class name_resolver;

struct listener_runtime {
    const config::listener_config& cfg;
    std::size_t index;
    std::vector<tcp::endpoint> bound;                // actual addresses, ports filled in
    std::vector<tcp::endpoint> upstream_literal;     // set when the upstream host is an IP literal
    std::optional<net::ip::address> source_address;  // parsed upstream.source_address
    std::atomic<std::size_t> live{0};
    listener_metrics& metrics;
    std::optional<forward::destination_acl> acl;       // forward modes
    std::unique_ptr<forward::credential_verifier> verifier;  // forward modes with auth
    password_checks* passwords = nullptr;                    // where verifier->verify runs
    name_resolver* resolver = nullptr;  // host names: forward modes, or an upstream given by name
    const std::vector<tcp::endpoint>* all_bound = nullptr;  // every listener's, to refuse loops
    // steady_clock ticks of the last accept-error log line, shared by the workers so
    // that descriptor exhaustion is logged once per interval, not once per worker.
    std::atomic<std::int64_t> last_accept_error_log{0};

    // Addresses the upstream host name resolved to, for the kernel census. An IP
    // literal upstream needs no bookkeeping; a host name's addresses are noted
    // the first time a connection reaches them.
    std::vector<tcp::endpoint> upstreams_seen() const {
        if (!upstream_literal.empty()) return upstream_literal;
        std::lock_guard lock(resolved_mutex_);
        return resolved_;
    }
    void note_upstream(const tcp::endpoint& ep) {
        if (!upstream_literal.empty()) return;
        std::lock_guard lock(resolved_mutex_);
        if (std::find(resolved_.begin(), resolved_.end(), ep) == resolved_.end()) resolved_.push_back(ep);
    }

    listener_runtime(const config::listener_config& c, std::size_t i, listener_metrics& m)
        : cfg(c), index(i), metrics(m) {}

private:
    mutable std::mutex resolved_mutex_;
    std::vector<tcp::endpoint> resolved_;
};

}  // namespace halfpipe
