#include "server/metrics/proxy_metrics.hpp"

#include <string>

#include "server/session.hpp"

namespace halfpipe {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

constexpr std::array relay_states{relay_state::connecting, relay_state::established, relay_state::client_fin,
                                  relay_state::upstream_fin, relay_state::closing};
constexpr std::array initiators{initiator::client, initiator::upstream, initiator::proxy};
constexpr std::array hows{close_how::fin, close_how::rst, close_how::timeout, close_how::error, close_how::limit};

// Seconds: from sub-millisecond loopback connects to hour-long tunnels.
const prometheus::Histogram::BucketBoundaries duration_buckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                              0.25,   0.5,   1,      2.5,   5,    10,    30,    60,
                                                              300,    900,   3600};
const prometheus::Histogram::BucketBoundaries connect_buckets{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                             0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                                             5,      10};
const prometheus::Histogram::BucketBoundaries byte_buckets{64,       512,       4096,       32768,      262144,
                                                          1048576,  8388608,   67108864,   536870912,  4294967296.0};

std::size_t index_of(std::string_view value, const auto& vocabulary) {
    for (std::size_t i = 0; i < vocabulary.size(); ++i)
        if (value == vocabulary[i]) return i;
    return vocabulary.size() - 1;  // "other"
}

}  // namespace

void listener_metrics::connect_error(std::string_view reason) {
    // The access log's reasons carry a connect_ prefix; the label does not repeat the metric's name.
    if (reason.starts_with("connect_")) reason.remove_prefix(8);
    connect_errors[index_of(reason, connect_error_reasons)]->Increment();
}

void listener_metrics::accept_error(std::string_view reason) {
    accept_errors[index_of(reason, accept_error_reasons)]->Increment();
}

void listener_metrics::forward_rejected(std::string_view reason) {
    forward_rejections[index_of(reason, forward_rejection_reasons)]->Increment();
}

void listener_metrics::state_change(std::optional<relay_state> from, std::optional<relay_state> to) {
    if (from == to) return;
    if (from) states[static_cast<int>(*from)]->Decrement();
    if (to) states[static_cast<int>(*to)]->Increment();
}

proxy_metrics::proxy_metrics(const config::config& cfg) {
    auto& r = *registry_;
    auto& accepted = BuildCounter().Name("halfpipe_connections_accepted_total").Help("Client connections accepted.").Register(r);
    auto& closed = BuildCounter()
                       .Name("halfpipe_connections_closed_total")
                       .Help("Connections ended, by who ended them first and how.")
                       .Register(r);
    auto& resets = BuildCounter()
                       .Name("halfpipe_resets_translated_total")
                       .Help("RSTs from one peer passed on as an RST to the other.")
                       .Register(r);
    auto& half_closes = BuildCounter()
                            .Name("halfpipe_half_closes_total")
                            .Help("FINs passed on while the other direction kept flowing, by the side that sent it.")
                            .Register(r);
    auto& bytes = BuildCounter().Name("halfpipe_bytes_total").Help("Bytes relayed, by direction.").Register(r);
    auto& connect_errors = BuildCounter()
                               .Name("halfpipe_upstream_connect_errors_total")
                               .Help("Failed upstream connects, by reason.")
                               .Register(r);
    auto& accept_errors = BuildCounter()
                              .Name("halfpipe_accept_errors_total")
                              .Help("accept() failures that paused the accept loop, by reason.")
                              .Register(r);
    auto& rejected = BuildCounter()
                         .Name("halfpipe_connections_rejected_total")
                         .Help("Client connections reset on accept, by reason.")
                         .Register(r);
    auto& forward_rejections = BuildCounter()
                                   .Name("halfpipe_forward_rejections_total")
                                   .Help("Forward-proxy clients turned away before a tunnel opened, by reason.")
                                   .Register(r);
    auto& states = BuildGauge()
                       .Name("halfpipe_connections")
                       .Help("Live relayed connections by relay state (client_fin: the client sent FIN, halfpipe "
                             "drains upstream to client).")
                       .Register(r);
    auto& duration = BuildHistogram()
                         .Name("halfpipe_connection_duration_seconds")
                         .Help("Lifetime of relayed connections.")
                         .Register(r);
    auto& connect = BuildHistogram()
                        .Name("halfpipe_upstream_connect_duration_seconds")
                        .Help("Time to resolve and connect to the upstream.")
                        .Register(r);
    auto& half_closed = BuildHistogram()
                            .Name("halfpipe_half_closed_duration_seconds")
                            .Help("Time connections spent with one direction finished.")
                            .Register(r);
    auto& transferred = BuildHistogram()
                            .Name("halfpipe_connection_transferred_bytes")
                            .Help("Bytes relayed per connection, both directions.")
                            .Register(r);
    BuildGauge()
        .Name("halfpipe_build_info")
        .Help("Always 1; the version label says which build runs.")
        .Register(r)
        .Add({{"version", HALFPIPE_VERSION}})
        .Set(1);

    // Mode and auth per listener once, as an info metric: a label on every series would
    // multiply nothing but the bytes of each scrape.
    auto& listener_info = BuildGauge()
                              .Name("halfpipe_listener_info")
                              .Help("Always 1; the labels give each listener's mode (reverse, connect, socks5) and "
                                    "whether its clients must authenticate (auth=on|off).")
                              .Register(r);

    for (const auto& l : cfg.listeners) {
        const std::string& name = l.name;
        listener_info
            .Add({{"listener", name}, {"mode", std::string(config::to_string(l.mode))}, {"auth", l.auth ? "on" : "off"}})
            .Set(1);
        listener_metrics m{};
        m.accepted = &accepted.Add({{"listener", name}});
        for (auto who : initiators)
            for (auto how : hows)
                m.closed[static_cast<int>(who)][static_cast<int>(how)] = &closed.Add(
                    {{"listener", name}, {"initiator", std::string(to_string(who))}, {"how", std::string(to_string(how))}});
        m.resets_translated = {&resets.Add({{"listener", name}, {"direction", "client_to_upstream"}}),
                               &resets.Add({{"listener", name}, {"direction", "upstream_to_client"}})};
        m.half_closes = {&half_closes.Add({{"listener", name}, {"side", "client"}}),
                         &half_closes.Add({{"listener", name}, {"side", "upstream"}})};
        m.bytes = {&bytes.Add({{"listener", name}, {"direction", "to_upstream"}}),
                   &bytes.Add({{"listener", name}, {"direction", "to_client"}})};
        for (std::size_t i = 0; i < connect_error_reasons.size(); ++i)
            m.connect_errors[i] = &connect_errors.Add({{"listener", name}, {"reason", connect_error_reasons[i]}});
        for (std::size_t i = 0; i < accept_error_reasons.size(); ++i)
            m.accept_errors[i] = &accept_errors.Add({{"listener", name}, {"reason", accept_error_reasons[i]}});
        m.rejected_max_connections = &rejected.Add({{"listener", name}, {"reason", "max_connections"}});
        for (std::size_t i = 0; i < forward_rejection_reasons.size(); ++i)
            m.forward_rejections[i] = &forward_rejections.Add({{"listener", name}, {"reason", forward_rejection_reasons[i]}});
        for (auto st : relay_states)
            m.states[static_cast<int>(st)] = &states.Add({{"listener", name}, {"state", std::string(to_string(st))}});
        m.duration = &duration.Add({{"listener", name}}, duration_buckets);
        m.connect_duration = &connect.Add({{"listener", name}}, connect_buckets);
        m.half_closed_duration = &half_closed.Add({{"listener", name}}, duration_buckets);
        m.transferred = &transferred.Add({{"listener", name}}, byte_buckets);
        listeners_.push_back(m);
    }
}

}  // namespace halfpipe
