#pragma once
// Every metric halfpipe exports is declared here, and only here. Label sets are
// resolved once per listener at start, so the relay's hot path does no lookups.
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <memory>
#include <string_view>
#include <vector>

#include "common/close_outcome.hpp"
#include "config/config.hpp"

namespace halfpipe {

enum class relay_state;

// Vocabularies of the label values, in one place with the metrics they label.
inline constexpr std::array connect_error_reasons{"refused", "timeout", "unreachable", "port_exhausted",
                                                  "resolve_failed", "other"};
inline constexpr std::array accept_error_reasons{"emfile", "enfile", "enobufs", "enomem", "other"};
// auth_required: no usable credentials offered; auth_failed: wrong ones; auth_overloaded:
// too many password checks queued to take one more.
inline constexpr std::array forward_rejection_reasons{"destination_denied", "bad_request", "handshake_incomplete",
                                                      "auth_required", "auth_failed", "auth_overloaded"};

struct listener_metrics {
    prometheus::Counter* accepted;
    std::array<std::array<prometheus::Counter*, 5>, 3> closed;  // [initiator][close_how]
    std::array<prometheus::Counter*, 2> resets_translated;      // [direction of the reset]: client_to_upstream, upstream_to_client
    std::array<prometheus::Counter*, 2> half_closes;            // [direction]: side client, side upstream
    std::array<prometheus::Counter*, 2> bytes;                  // [direction]: to_upstream, to_client
    std::array<prometheus::Counter*, connect_error_reasons.size()> connect_errors;
    std::array<prometheus::Counter*, accept_error_reasons.size()> accept_errors;
    prometheus::Counter* rejected_max_connections;
    std::array<prometheus::Counter*, forward_rejection_reasons.size()> forward_rejections;
    std::array<prometheus::Gauge*, 5> states;  // [relay_state]
    prometheus::Histogram* duration;
    prometheus::Histogram* connect_duration;
    prometheus::Histogram* half_closed_duration;
    prometheus::Histogram* transferred;

    void closed_with(close_outcome o) { closed[static_cast<int>(o.who)][static_cast<int>(o.how)]->Increment(); }
    void connect_error(std::string_view reason);  // reason as in the access log (connect_refused, ...)
    void accept_error(std::string_view reason);
    void forward_rejected(std::string_view reason);
    void state_change(std::optional<relay_state> from, std::optional<relay_state> to);
};

class proxy_metrics {
public:
    explicit proxy_metrics(const config::config& cfg);
    proxy_metrics(const proxy_metrics&) = delete;
    proxy_metrics& operator=(const proxy_metrics&) = delete;

    listener_metrics& listener(std::size_t index) { return listeners_[index]; }
    std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

private:
    std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
    std::vector<listener_metrics> listeners_;
};

}  // namespace halfpipe
