#include "server/metrics/scrape_time_metrics.hpp"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace halfpipe {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// The states an operator can act on; LISTEN and CLOSE are never reported.
constexpr std::array reported_states{kernel::tcp_state::established, kernel::tcp_state::syn_sent,
                                     kernel::tcp_state::syn_recv,    kernel::tcp_state::fin_wait1,
                                     kernel::tcp_state::fin_wait2,   kernel::tcp_state::time_wait,
                                     kernel::tcp_state::close_wait,  kernel::tcp_state::last_ack,
                                     kernel::tcp_state::closing};

ClientMetric gauge(std::vector<ClientMetric::Label> labels, double value) {
    ClientMetric m;
    m.label = std::move(labels);
    m.gauge.value = value;
    return m;
}

ClientMetric counter(double value) {
    ClientMetric m;
    m.counter.value = value;
    return m;
}

MetricFamily family(std::string name, std::string help, MetricType type) {
    MetricFamily f;
    f.name = std::move(name);
    f.help = std::move(help);
    f.type = type;
    return f;
}

// Fields of /proc/self/stat after the command name, which may itself hold spaces.
std::vector<std::string> self_stat_fields() {
    std::ifstream in("/proc/self/stat");
    std::string line;
    std::getline(in, line);
    std::vector<std::string> fields;
    auto close = line.rfind(')');
    if (close == std::string::npos) return fields;
    std::istringstream rest(line.substr(close + 2));
    for (std::string f; rest >> f;) fields.push_back(f);
    return fields;  // fields[0] is field 3 (state)
}

double boot_time_seconds() {
    std::ifstream in("/proc/stat");
    for (std::string key; in >> key;) {
        if (key == "btime") {
            double t = 0;
            in >> t;
            return t;
        }
        in.ignore(1 << 16, '\n');
    }
    return 0;
}

// Since Linux 6.2 the size of /proc/self/fd is the number of open descriptors: one
// stat instead of listing 20,000 entries (a quarter of a scrape with 10,000
// connections). Older kernels report 0 there, and get the listing.
std::size_t open_fd_count() {
    struct stat st {};
    if (::stat("/proc/self/fd", &st) == 0 && st.st_size > 0) return static_cast<std::size_t>(st.st_size);
    std::size_t fds = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
        ++fds;
    return fds > 0 ? fds - 1 : 0;  // not the descriptor of the listing itself
}

}  // namespace

std::vector<MetricFamily> kernel_socket_families(const kernel::census_query& query,
                                                 const std::vector<std::string>& listener_names) {
    auto census = kernel::take_census(query);
    auto sockets = family("halfpipe_tcp_sockets",
                          "halfpipe's TCP sockets by kernel state, read from sock_diag at scrape time (TIME_WAIT and "
                          "orphaned sockets included). side=downstream: accepted from clients; upstream: toward "
                          "upstreams.",
                          MetricType::Gauge);
    for (const auto& name : listener_names)
        for (auto s : {kernel::side::downstream, kernel::side::upstream})
            for (auto st : reported_states)
                sockets.metric.push_back(gauge({{"listener", name},
                                                {"side", std::string(kernel::side_name(s))},
                                                {"state", std::string(kernel::state_name(st))}},
                                               static_cast<double>(census.count(name, s, st))));

    auto time_wait = family("halfpipe_upstream_time_wait_sockets",
                            "Sockets in TIME_WAIT toward each upstream address; each holds an ephemeral port.",
                            MetricType::Gauge);
    auto headroom = family("halfpipe_upstream_port_headroom",
                           "Ephemeral ports still free toward each upstream address: the local port range minus "
                           "sockets in any state toward it.",
                           MetricType::Gauge);
    const auto range = kernel::local_port_range();
    for (const auto& [key, counts] : census.upstreams) {
        const auto& [listener, upstream] = key;
        std::vector<ClientMetric::Label> labels{{"listener", listener}, {"upstream", upstream.to_string()}};
        time_wait.metric.push_back(gauge(labels, static_cast<double>(counts.time_wait)));
        headroom.metric.push_back(gauge(labels, static_cast<double>(kernel::port_headroom(census, upstream, range))));
    }
    return {std::move(sockets), std::move(time_wait), std::move(headroom)};
}

std::vector<MetricFamily> process_families() {
    std::vector<MetricFamily> out;
    const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
    const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
    auto stat = self_stat_fields();

    const auto fds = open_fd_count();
    auto open_fds = family("process_open_fds", "Number of open file descriptors.", MetricType::Gauge);
    open_fds.metric.push_back(gauge({}, static_cast<double>(fds)));
    out.push_back(std::move(open_fds));

    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    auto max_fds = family("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge);
    max_fds.metric.push_back(gauge({}, static_cast<double>(limit.rlim_cur)));
    out.push_back(std::move(max_fds));

    // Field numbers as in proc(5): utime 14, stime 15, starttime 22, rss 24.
    auto field = [&](std::size_t number) { return number - 3 < stat.size() ? std::stod(stat[number - 3]) : 0.0; };
    auto rss = family("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge);
    rss.metric.push_back(gauge({}, field(24) * page));
    out.push_back(std::move(rss));
    auto cpu = family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                      MetricType::Counter);
    cpu.metric.push_back(counter((field(14) + field(15)) / ticks));
    out.push_back(std::move(cpu));
    auto start = family("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                        MetricType::Gauge);
    start.metric.push_back(gauge({}, boot_time_seconds() + field(22) / ticks));
    out.push_back(std::move(start));
    return out;
}

}  // namespace halfpipe
