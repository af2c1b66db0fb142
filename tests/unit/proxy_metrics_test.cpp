// halfpipe::proxy_metrics: the families it registers, their types and label sets,
// Prometheus naming conventions, and the per-state gauges kept by state_change.
#include <gtest/gtest.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "server/metrics/proxy_metrics.hpp"
#include "server/metrics/scrape_time_metrics.hpp"
#include "server/session.hpp"

namespace halfpipe {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using label_set = std::map<std::string, std::string>;

const std::vector<std::string> listeners{"web", "db"};
const std::vector<std::string> states{"connecting", "established", "client_fin", "upstream_fin", "closing"};
const std::vector<std::string> initiators{"client", "upstream", "proxy"};
const std::vector<std::string> hows{"fin", "rst", "timeout", "error", "limit"};

config::config two_listeners() {
    return config::load_string(R"(
admin: {address: 127.0.0.1:9901}
listeners:
  - name: web
    bind: 127.0.0.1:18080
    upstream: {address: 127.0.0.1:9000}
  - name: db
    bind: 127.0.0.1:15432
    upstream: {address: 127.0.0.1:5432}
)");
}

label_set labels_of(const ClientMetric& m) {
    label_set out;
    for (const auto& l : m.label) out[l.name] = l.value;
    return out;
}

class proxy_metrics_test : public ::testing::Test {
protected:
    config::config cfg = two_listeners();
    proxy_metrics metrics{cfg};

    std::vector<MetricFamily> collect() const { return metrics.registry()->Collect(); }

    std::map<std::string, MetricFamily> families() const {
        std::map<std::string, MetricFamily> out;
        for (auto& f : collect()) {
            EXPECT_FALSE(out.contains(f.name)) << "family registered twice: " << f.name;
            out[f.name] = f;
        }
        return out;
    }

    const MetricFamily& family(const std::map<std::string, MetricFamily>& all, const std::string& name) const {
        static const MetricFamily none;
        auto it = all.find(name);
        if (it == all.end()) {
            ADD_FAILURE() << "no family " << name;
            return none;
        }
        return it->second;
    }

    // Label sets of a family, in any order.
    std::multiset<label_set> label_sets(const std::string& name) const {
        std::multiset<label_set> out;
        auto all = families();
        for (const auto& m : family(all, name).metric) out.insert(labels_of(m));
        return out;
    }

    // The value of the one series with exactly these labels (gauge or counter).
    std::optional<double> value(const std::string& name, const label_set& labels) const {
        auto all = families();
        const auto& f = family(all, name);
        std::optional<double> found;
        for (const auto& m : f.metric) {
            if (labels_of(m) != labels) continue;
            EXPECT_FALSE(found) << name << ": two series with the same labels";
            found = f.type == MetricType::Counter ? m.counter.value : m.gauge.value;
        }
        return found;
    }

    double gauge_sum(const std::string& listener) const {
        double sum = 0;
        for (const auto& st : states) sum += value("halfpipe_connections", {{"listener", listener}, {"state", st}}).value_or(NAN);
        return sum;
    }
};

std::multiset<label_set> per_listener(const std::string& key, const std::vector<std::string>& values) {
    std::multiset<label_set> out;
    for (const auto& l : listeners)
        for (const auto& v : values) out.insert({{"listener", l}, {key, v}});
    return out;
}

TEST_F(proxy_metrics_test, registers_exactly_the_documented_families_with_their_types) {
    std::map<std::string, MetricType> types;
    for (const auto& [name, f] : families()) types[name] = f.type;
    const std::map<std::string, MetricType> expected{
        {"halfpipe_connections", MetricType::Gauge},
        {"halfpipe_connections_accepted_total", MetricType::Counter},
        {"halfpipe_connections_closed_total", MetricType::Counter},
        {"halfpipe_resets_translated_total", MetricType::Counter},
        {"halfpipe_half_closes_total", MetricType::Counter},
        {"halfpipe_bytes_total", MetricType::Counter},
        {"halfpipe_upstream_connect_errors_total", MetricType::Counter},
        {"halfpipe_accept_errors_total", MetricType::Counter},
        {"halfpipe_connections_rejected_total", MetricType::Counter},
        {"halfpipe_forward_rejections_total", MetricType::Counter},
        {"halfpipe_connection_duration_seconds", MetricType::Histogram},
        {"halfpipe_upstream_connect_duration_seconds", MetricType::Histogram},
        {"halfpipe_half_closed_duration_seconds", MetricType::Histogram},
        {"halfpipe_connection_transferred_bytes", MetricType::Histogram},
        {"halfpipe_build_info", MetricType::Gauge},
        {"halfpipe_listener_info", MetricType::Gauge},
    };
    EXPECT_EQ(types, expected);
}

#ifdef HALFPIPE_EXPORTED_METRICS
// tests/deploy/exported_metrics.txt: name -> type, what dashboards and alerts are checked against.
std::map<std::string, std::string> exported_metrics() {
    std::ifstream in(HALFPIPE_EXPORTED_METRICS);
    EXPECT_TRUE(in) << HALFPIPE_EXPORTED_METRICS;
    std::map<std::string, std::string> listed;
    for (std::string line; std::getline(in, line);) {
        line = line.substr(0, line.find('#'));
        std::istringstream words(line);
        std::string name, type;
        if (words >> name >> type) listed[name] = type;
    }
    return listed;
}

const char* type_name(MetricType t) {
    switch (t) {
        case MetricType::Counter: return "counter";
        case MetricType::Gauge: return "gauge";
        case MetricType::Histogram: return "histogram";
        case MetricType::Summary: return "summary";
        default: return "untyped";
    }
}

TEST_F(proxy_metrics_test, every_family_is_listed_in_exported_metrics_txt_with_its_type) {
    auto listed = exported_metrics();
    for (const auto& [name, f] : families()) {
        ASSERT_TRUE(listed.contains(name)) << name << " is not in exported_metrics.txt";
        EXPECT_EQ(listed[name], type_name(f.type)) << name;
    }
}
#endif

TEST_F(proxy_metrics_test, names_follow_prometheus_conventions) {
    const std::regex metric_name("[a-zA-Z_][a-zA-Z0-9_]*");  // no ':' either: reserved for recording rules
    const std::regex label_name("[a-zA-Z_][a-zA-Z0-9_]*");
    // Base units only (seconds, bytes): no scaled or non-base units in a name.
    const std::regex non_base_unit(
        "_(ms|us|ns|millis|micros|nanos|milliseconds|microseconds|nanoseconds|minutes|hours|days|kb|mb|gb|kib|mib|"
        "gib|kilobytes|megabytes|gigabytes|bits|percent)(_|$)");
    for (const auto& [name, f] : families()) {
        SCOPED_TRACE(name);
        EXPECT_TRUE(std::regex_match(name, metric_name));
        EXPECT_TRUE(name.starts_with("halfpipe_"));
        EXPECT_FALSE(std::regex_search(name, non_base_unit));
        EXPECT_EQ(name.find("__"), std::string::npos);
        EXPECT_FALSE(f.help.empty());
        const bool total = name.ends_with("_total");
        EXPECT_EQ(total, f.type == MetricType::Counter) << "counters, and only counters, end in _total";
        for (const char* reserved : {"_count", "_sum", "_bucket"})
            EXPECT_FALSE(name.ends_with(reserved)) << "suffix reserved for histograms and summaries";
        if (f.type == MetricType::Histogram) {
            EXPECT_TRUE(name.ends_with("_seconds") || name.ends_with("_bytes")) << "a histogram names its base unit";
        }
        if (name.find("duration") != std::string::npos) {
            EXPECT_TRUE(name.ends_with("_seconds"));
        }
        if (name.ends_with("_info")) {
            EXPECT_EQ(f.type, MetricType::Gauge);
            for (const auto& m : f.metric) EXPECT_EQ(m.gauge.value, 1);
        }
        ASSERT_FALSE(f.metric.empty()) << "every family has its series from the start";
        for (const auto& m : f.metric) {
            std::set<std::string> seen;
            for (const auto& l : m.label) {
                EXPECT_TRUE(std::regex_match(l.name, label_name)) << l.name;
                EXPECT_FALSE(l.name.starts_with("__")) << l.name;
                EXPECT_NE(l.name, "le") << "le is the histogram bucket label";
                EXPECT_FALSE(l.value.empty()) << l.name;
                EXPECT_TRUE(seen.insert(l.name).second) << "label twice: " << l.name;
            }
        }
    }
}

TEST_F(proxy_metrics_test, connections_gauge_has_every_listener_and_state_at_zero) {
    EXPECT_EQ(label_sets("halfpipe_connections"), per_listener("state", states));
    for (const auto& l : listeners)
        for (const auto& st : states)
            EXPECT_EQ(value("halfpipe_connections", {{"listener", l}, {"state", st}}), 0.0) << l << " " << st;
}

TEST_F(proxy_metrics_test, closed_total_has_every_listener_initiator_and_how) {
    std::multiset<label_set> expected;
    for (const auto& l : listeners)
        for (const auto& who : initiators)
            for (const auto& how : hows) expected.insert({{"listener", l}, {"initiator", who}, {"how", how}});
    EXPECT_EQ(label_sets("halfpipe_connections_closed_total"), expected);
}

TEST_F(proxy_metrics_test, label_vocabularies) {
    EXPECT_EQ(label_sets("halfpipe_connections_accepted_total"),
              (std::multiset<label_set>{{{"listener", "web"}}, {{"listener", "db"}}}));
    EXPECT_EQ(label_sets("halfpipe_resets_translated_total"),
              per_listener("direction", {"client_to_upstream", "upstream_to_client"}));
    EXPECT_EQ(label_sets("halfpipe_half_closes_total"), per_listener("side", {"client", "upstream"}));
    EXPECT_EQ(label_sets("halfpipe_bytes_total"), per_listener("direction", {"to_upstream", "to_client"}));
    EXPECT_EQ(label_sets("halfpipe_upstream_connect_errors_total"),
              per_listener("reason", {"refused", "timeout", "unreachable", "port_exhausted", "resolve_failed", "other"}));
    EXPECT_EQ(label_sets("halfpipe_accept_errors_total"),
              per_listener("reason", {"emfile", "enfile", "enobufs", "enomem", "other"}));
    EXPECT_EQ(label_sets("halfpipe_connections_rejected_total"), per_listener("reason", {"max_connections"}));
    EXPECT_EQ(label_sets("halfpipe_forward_rejections_total"),
              per_listener("reason", {"destination_denied", "bad_request", "handshake_incomplete", "auth_required", "auth_failed", "auth_overloaded"}));
    for (const char* h : {"halfpipe_connection_duration_seconds", "halfpipe_upstream_connect_duration_seconds",
                          "halfpipe_half_closed_duration_seconds", "halfpipe_connection_transferred_bytes"})
        EXPECT_EQ(label_sets(h), (std::multiset<label_set>{{{"listener", "web"}}, {{"listener", "db"}}})) << h;
    EXPECT_EQ(label_sets("halfpipe_listener_info"),
              (std::multiset<label_set>{{{"listener", "web"}, {"mode", "reverse"}, {"auth", "off"}},
                                        {{"listener", "db"}, {"mode", "reverse"}, {"auth", "off"}}}));
    auto build = label_sets("halfpipe_build_info");
    ASSERT_EQ(build.size(), 1u);
    EXPECT_EQ(*build.begin(), (label_set{{"version", HALFPIPE_VERSION}}));
    // The header's vocabularies are the ones the label values come from.
    EXPECT_EQ(std::vector<std::string>(connect_error_reasons.begin(), connect_error_reasons.end()),
              (std::vector<std::string>{"refused", "timeout", "unreachable", "port_exhausted", "resolve_failed", "other"}));
    EXPECT_EQ(std::vector<std::string>(accept_error_reasons.begin(), accept_error_reasons.end()),
              (std::vector<std::string>{"emfile", "enfile", "enobufs", "enomem", "other"}));
    EXPECT_EQ(std::vector<std::string>(forward_rejection_reasons.begin(), forward_rejection_reasons.end()),
              (std::vector<std::string>{"destination_denied", "bad_request", "handshake_incomplete", "auth_required", "auth_failed", "auth_overloaded"}));
    for (std::size_t i = 0; i < states.size(); ++i)
        EXPECT_EQ(to_string(static_cast<relay_state>(i)), states[i]);
    for (std::size_t i = 0; i < initiators.size(); ++i) EXPECT_EQ(to_string(static_cast<initiator>(i)), initiators[i]);
    for (std::size_t i = 0; i < hows.size(); ++i) EXPECT_EQ(to_string(static_cast<close_how>(i)), hows[i]);
}

TEST_F(proxy_metrics_test, histogram_buckets_are_increasing_and_in_base_units) {
    auto all = families();
    for (const auto& [name, f] : all) {
        if (f.type != MetricType::Histogram) continue;
        SCOPED_TRACE(name);
        for (const auto& m : f.metric) {
            const auto& b = m.histogram.bucket;
            ASSERT_GE(b.size(), 2u);
            EXPECT_TRUE(std::isinf(b.back().upper_bound));
            for (std::size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1].upper_bound, b[i].upper_bound);
            EXPECT_EQ(m.histogram.sample_count, 0u);
            if (name.ends_with("_seconds")) {
                // Seconds: sub-millisecond loopback connects up to long-lived tunnels.
                EXPECT_LE(b.front().upper_bound, 0.001);
                EXPECT_GE(b[b.size() - 2].upper_bound, 10);
            } else {
                EXPECT_GE(b[b.size() - 2].upper_bound, 1 << 20);  // bytes, not KiB
            }
        }
    }
}

TEST_F(proxy_metrics_test, state_change_keeps_the_sum_equal_to_live_sessions) {
    auto& web = metrics.listener(0);
    auto st = [&](const std::string& s) {
        return value("halfpipe_connections", {{"listener", "web"}, {"state", s}}).value_or(NAN);
    };
    using rs = relay_state;
    // Three sessions on web, each walking its own path, the way session.cpp calls it.
    web.state_change(std::nullopt, rs::connecting);  // A accepted
    web.state_change(std::nullopt, rs::connecting);  // B accepted
    EXPECT_EQ(gauge_sum("web"), 2);
    EXPECT_EQ(st("connecting"), 2);
    web.state_change(rs::connecting, rs::established);  // A connected
    web.state_change(rs::connecting, rs::closing);      // B: connect refused
    web.state_change(std::nullopt, rs::connecting);     // C accepted
    web.state_change(rs::connecting, rs::established);  // C connected
    EXPECT_EQ(gauge_sum("web"), 3);
    EXPECT_EQ(st("established"), 2);
    EXPECT_EQ(st("closing"), 1);
    web.state_change(rs::closing, std::nullopt);  // B gone
    EXPECT_EQ(gauge_sum("web"), 2);
    web.state_change(rs::established, rs::client_fin);  // A: client FIN
    web.state_change(rs::established, rs::established);  // C: unchanged, no-op
    web.state_change(rs::established, rs::upstream_fin);  // C: upstream FIN
    EXPECT_EQ(st("client_fin"), 1);
    EXPECT_EQ(st("upstream_fin"), 1);
    EXPECT_EQ(st("established"), 0);
    EXPECT_EQ(gauge_sum("web"), 2);
    web.state_change(rs::client_fin, rs::closing);
    web.state_change(rs::closing, rs::closing);  // terminate() after both FINs: no-op
    web.state_change(rs::upstream_fin, rs::closing);
    EXPECT_EQ(st("closing"), 2);
    EXPECT_EQ(gauge_sum("web"), 2);
    web.state_change(rs::closing, std::nullopt);
    web.state_change(rs::closing, std::nullopt);
    EXPECT_EQ(gauge_sum("web"), 0);
    for (const auto& s : states) EXPECT_EQ(st(s), 0) << s;
    // The other listener never moved.
    EXPECT_EQ(gauge_sum("db"), 0);
    web.state_change(std::nullopt, std::nullopt);  // nothing to nothing: no-op
    EXPECT_EQ(gauge_sum("web"), 0);
}

TEST_F(proxy_metrics_test, many_sessions_random_walk_keeps_the_sum) {
    auto& db = metrics.listener(1);
    using rs = relay_state;
    std::vector<std::optional<rs>> live(200);
    unsigned seed = 12345;
    auto next = [&] { return seed = seed * 1103515245u + 12345u, (seed >> 16) & 0x7fff; };
    std::size_t alive = 0;
    for (int step = 0; step < 5000; ++step) {
        auto& s = live[next() % live.size()];
        std::optional<rs> to;
        if (!s)
            to = rs::connecting;
        else if (*s == rs::closing)
            to = std::nullopt;
        else
            to = static_cast<rs>(next() % 5);
        alive += (!s && to) ? 1 : 0;
        alive -= (s && !to) ? 1 : 0;
        db.state_change(s, to);
        s = to;
    }
    EXPECT_EQ(gauge_sum("db"), static_cast<double>(alive));
    std::map<rs, int> by_state;
    for (const auto& s : live)
        if (s) ++by_state[*s];
    for (std::size_t i = 0; i < states.size(); ++i)
        EXPECT_EQ(value("halfpipe_connections", {{"listener", "db"}, {"state", states[i]}}),
                  static_cast<double>(by_state[static_cast<rs>(i)]))
            << states[i];
    EXPECT_EQ(gauge_sum("web"), 0);
}

TEST_F(proxy_metrics_test, closed_with_counts_the_one_initiator_and_how) {
    metrics.listener(1).closed_with({initiator::upstream, close_how::rst, "upstream_reset"});
    metrics.listener(1).closed_with({initiator::upstream, close_how::rst, "upstream_reset"});
    metrics.listener(0).closed_with({initiator::proxy, close_how::timeout, "idle_timeout"});
    for (const auto& l : listeners)
        for (const auto& who : initiators)
            for (const auto& how : hows) {
                double expected = (l == "db" && who == "upstream" && how == "rst")     ? 2
                                  : (l == "web" && who == "proxy" && how == "timeout") ? 1
                                                                                       : 0;
                EXPECT_EQ(value("halfpipe_connections_closed_total", {{"listener", l}, {"initiator", who}, {"how", how}}),
                          expected)
                    << l << " " << who << " " << how;
            }
}

TEST_F(proxy_metrics_test, connect_and_accept_error_reasons_map_onto_the_vocabulary) {
    auto& web = metrics.listener(0);
    // The access log's reasons (upstream_connector.cpp) lose their connect_ prefix.
    for (const char* r : {"connect_refused", "connect_refused", "connect_timeout", "connect_unreachable", "port_exhausted",
                          "resolve_failed", "connect_error", "aborted"})
        web.connect_error(r);
    auto errors = [&](const char* reason) {
        return value("halfpipe_upstream_connect_errors_total", {{"listener", "web"}, {"reason", reason}});
    };
    EXPECT_EQ(errors("refused"), 2);
    EXPECT_EQ(errors("timeout"), 1);
    EXPECT_EQ(errors("unreachable"), 1);
    EXPECT_EQ(errors("port_exhausted"), 1);
    EXPECT_EQ(errors("resolve_failed"), 1);
    EXPECT_EQ(errors("other"), 2);  // connect_error, aborted
    for (const char* r : {"emfile", "enfile", "enobufs", "enomem", "eagain"}) web.accept_error(r);
    for (const char* r : {"emfile", "enfile", "enobufs", "enomem", "other"})
        EXPECT_EQ(value("halfpipe_accept_errors_total", {{"listener", "web"}, {"reason", r}}), 1) << r;
    EXPECT_EQ(value("halfpipe_upstream_connect_errors_total", {{"listener", "db"}, {"reason", "refused"}}), 0);
}

TEST_F(proxy_metrics_test, forward_rejections_count_each_reason_on_its_own_series) {
    auto& db = metrics.listener(1);
    const std::vector<std::string> reasons{"destination_denied", "bad_request", "handshake_incomplete", "auth_required", "auth_failed", "auth_overloaded"};
    for (std::size_t i = 0; i < reasons.size(); ++i)
        for (std::size_t n = 0; n <= i; ++n) db.forward_rejected(reasons[i]);
    for (std::size_t i = 0; i < reasons.size(); ++i) {
        EXPECT_EQ(value("halfpipe_forward_rejections_total", {{"listener", "db"}, {"reason", reasons[i]}}),
                  static_cast<double>(i + 1))
            << reasons[i];
        EXPECT_EQ(value("halfpipe_forward_rejections_total", {{"listener", "web"}, {"reason", reasons[i]}}), 0.0);
    }
}

TEST_F(proxy_metrics_test, per_listener_pointers_are_the_listeners_own_series) {
    auto& web = metrics.listener(0);
    auto& db = metrics.listener(1);
    web.accepted->Increment();
    db.accepted->Increment(3);
    web.bytes[to_upstream]->Increment(100);
    db.bytes[to_client]->Increment(7);
    web.resets_translated[to_client]->Increment();
    db.half_closes[to_upstream]->Increment();
    web.rejected_max_connections->Increment();
    web.duration->Observe(0.002);
    EXPECT_EQ(value("halfpipe_connections_accepted_total", {{"listener", "web"}}), 1);
    EXPECT_EQ(value("halfpipe_connections_accepted_total", {{"listener", "db"}}), 3);
    EXPECT_EQ(value("halfpipe_bytes_total", {{"listener", "web"}, {"direction", "to_upstream"}}), 100);
    EXPECT_EQ(value("halfpipe_bytes_total", {{"listener", "web"}, {"direction", "to_client"}}), 0);
    EXPECT_EQ(value("halfpipe_bytes_total", {{"listener", "db"}, {"direction", "to_client"}}), 7);
    EXPECT_EQ(value("halfpipe_resets_translated_total", {{"listener", "web"}, {"direction", "upstream_to_client"}}), 1);
    EXPECT_EQ(value("halfpipe_half_closes_total", {{"listener", "db"}, {"side", "client"}}), 1);
    EXPECT_EQ(value("halfpipe_connections_rejected_total", {{"listener", "web"}, {"reason", "max_connections"}}), 1);
    auto all = families();
    for (const auto& m : family(all, "halfpipe_connection_duration_seconds").metric)
        EXPECT_EQ(m.histogram.sample_count, labels_of(m).at("listener") == "web" ? 1u : 0u);
}

TEST(listener_info, names_each_listeners_mode_and_auth) {
    config::config cfg;
    config::listener_config egress;
    egress.name = "egress";
    egress.mode = config::listener_mode::connect;
    egress.auth = config::auth_config{"users", {{"alice", "$6$x$y"}}, "halfpipe", std::nullopt};
    config::listener_config socks;
    socks.name = "socks";
    socks.mode = config::listener_mode::socks5;
    cfg.listeners = {egress, socks};
    proxy_metrics metrics{cfg};
    std::multiset<label_set> info;
    for (const auto& f : metrics.registry()->Collect()) {
        if (f.name != "halfpipe_listener_info") continue;
        for (const auto& m : f.metric) {
            EXPECT_EQ(m.gauge.value, 1.0);
            info.insert(labels_of(m));
        }
    }
    EXPECT_EQ(info, (std::multiset<label_set>{{{"listener", "egress"}, {"mode", "connect"}, {"auth", "on"}},
                                              {{"listener", "socks"}, {"mode", "socks5"}, {"auth", "off"}}}));
}

TEST(process_families, names_follow_prometheus_conventions) {
    const std::set<std::string> expected{"process_open_fds", "process_max_fds", "process_resident_memory_bytes",
                                         "process_cpu_seconds_total", "process_start_time_seconds"};
    std::set<std::string> names;
    for (const auto& f : process_families()) {
        names.insert(f.name);
        EXPECT_EQ(f.name.ends_with("_total"), f.type == MetricType::Counter) << f.name;
        ASSERT_EQ(f.metric.size(), 1u) << f.name;
        EXPECT_TRUE(f.metric[0].label.empty()) << f.name;
    }
    EXPECT_EQ(names, expected);
}

#ifdef HALFPIPE_EXPORTED_METRICS
TEST(process_families, every_family_is_listed_in_exported_metrics_txt_with_its_type) {
    auto listed = exported_metrics();
    for (const auto& f : process_families())
        EXPECT_EQ(listed[f.name], type_name(f.type)) << f.name << " in exported_metrics.txt";
}
#endif

}  // namespace
}  // namespace halfpipe
