#pragma once
// The state of one relayed connection. The worker owns it (drain and admin reach it
// through the worker's list); whoever ends the connection frees it (retire() in relay.cpp).
// It outlives its coroutine: an established connection runs on plain handlers alone,
// because a suspended coroutine chain would cost more than the whole session while
// the connection idles.
#include <array>
#include <boost/intrusive/list.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/close_kind.hpp"
#include "common/close_outcome.hpp"
#include "common/net.hpp"

namespace halfpipe {

struct listener_runtime;
class worker;

enum class relay_state { connecting, established, client_fin, upstream_fin, closing };
std::string_view to_string(relay_state state) noexcept;

// Index into per-direction arrays.
enum direction : std::size_t { to_upstream = 0, to_client = 1 };

using session_hook = boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

struct session : session_hook {
    using clock = std::chrono::steady_clock;

    session(std::uint64_t id, worker& owner, listener_runtime& listener, tcp_socket client,
            const tcp::endpoint& client_endpoint);
    ~session();
    session(const session&) = delete;
    session& operator=(const session&) = delete;

    std::uint64_t id;
    worker& owner;
    listener_runtime& listener;
    tcp_socket client;
    tcp_socket upstream;
    tcp::endpoint client_endpoint;
    std::optional<tcp::endpoint> upstream_endpoint;
    std::string destination;  // forward modes: host:port as the client asked for it
    std::string user;         // forward modes with auth: who authenticated (never a password)

    clock::time_point started;
    clock::time_point last_activity;
    std::optional<clock::time_point> half_closed_since;  // first FIN passed on
    std::array<std::uint64_t, 2> bytes{};
    std::array<bool, 2> finished{};  // FIN passed on in that direction
    std::array<bool, 2> writing{};   // a write in that direction is in flight
    // Reads that found nothing after a wake's bytes, counted up to a few (relay.cpp)
    std::array<std::uint8_t, 2> empty_reads{};
    // An RST arrived from the source of that direction while bytes it sent before
    // may still wait to be read; they are relayed until reset_deadline.
    std::array<bool, 2> reset_seen{};
    clock::time_point reset_deadline;
    relay_state state = relay_state::connecting;  // change through set_state: it keeps the gauges
    std::optional<close_outcome> outcome;  // the first close, who and how
    bool terminating = false;             // set once; every await checks it
    // Sleeps until the nearest idle, half-close or lifetime deadline; armed by the
    // relay, which waits for its last handler before the session goes.
    worker_timer watchdog;
    std::uint32_t watchdog_waits = 0;  // handlers armed and not yet run
    std::uint8_t directions_running = 0;  // relay directions not yet over

    void touch() noexcept { last_activity = clock::now(); }
    void set_state(relay_state next) noexcept;
    std::optional<initiator> first_fin;    // who half-closed first, even if a reset came later
    boost::system::error_code error;       // the I/O error behind how=error, for the log
    // The first end wins, except that a reset, timeout or error after a FIN is what
    // really ended the connection and replaces it.
    void note_outcome(close_outcome o) noexcept { outcome = merge(outcome, o); }
    // Ends the connection from halfpipe's side: both sockets closed per the
    // listener's linger policy, or as `kind` says (an operator's explicit close).
    void terminate(close_outcome why, std::optional<close_kind> kind = std::nullopt) noexcept;
};

using session_list = boost::intrusive::list<session, boost::intrusive::constant_time_size<false>>;

}  // namespace halfpipe
