#pragma once
// Metrics computed when Prometheus scrapes rather than counted as events: the
// kernel's view of halfpipe's sockets, and the process's own resources.
#include <prometheus/metric_family.h>

#include <vector>

#include "server/kernel/tcp_socket_census.hpp"

namespace halfpipe {

// halfpipe_tcp_sockets, halfpipe_upstream_time_wait_sockets, halfpipe_upstream_port_headroom.
// Every (listener, side, state) series is present, zeros included, so alerts and
// dashboards never see a series vanish.
std::vector<prometheus::MetricFamily> kernel_socket_families(const kernel::census_query& query,
                                                             const std::vector<std::string>& listener_names);

// process_open_fds, process_max_fds, process_resident_memory_bytes,
// process_cpu_seconds_total, process_start_time_seconds.
std::vector<prometheus::MetricFamily> process_families();

}  // namespace halfpipe
