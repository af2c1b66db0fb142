#pragma once
// A copy of one session's state, taken on its worker thread for the admin endpoint.
#include <cstdint>
#include <optional>
#include <string>

namespace halfpipe {

struct socket_snapshot {
    std::optional<int> kernel_state;  // TCP_ESTABLISHED, ... (linux/tcp.h numbering)
    std::uint32_t send_queue = 0;     // bytes not yet acknowledged by the peer
    std::uint32_t receive_queue = 0;  // bytes received, not yet read by halfpipe
    std::uint32_t rtt_us = 0;
    std::uint32_t retransmits = 0;    // total retransmitted segments
};

struct session_snapshot {
    std::uint64_t id = 0;
    std::string listener;
    std::string client;
    std::string upstream;  // "-" while connecting
    double age_seconds = 0;
    std::uint64_t bytes_to_upstream = 0;
    std::uint64_t bytes_to_client = 0;
    std::string state;
    socket_snapshot client_socket;
    socket_snapshot upstream_socket;
};

}  // namespace halfpipe
