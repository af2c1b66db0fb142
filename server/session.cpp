#include "server/session.hpp"

#include "server/listener_runtime.hpp"
#include "server/socket_options.hpp"
#include "server/worker.hpp"

namespace halfpipe {

std::string_view to_string(relay_state state) noexcept {
    switch (state) {
        case relay_state::connecting: return "connecting";
        case relay_state::established: return "established";
        case relay_state::client_fin: return "client_fin";
        case relay_state::upstream_fin: return "upstream_fin";
        case relay_state::closing: return "closing";
    }
    return "unknown";
}

session::session(std::uint64_t id_, worker& owner_, listener_runtime& listener_, tcp_socket client_,
                 const tcp::endpoint& client_endpoint_)
    : id(id_),
      owner(owner_),
      listener(listener_),
      client(std::move(client_)),
      upstream(client.get_executor()),
      client_endpoint(client_endpoint_),
      started(clock::now()),
      last_activity(started),
      watchdog(owner_.context()) {
    listener.metrics.state_change(std::nullopt, state);
}

session::~session() {
    listener.metrics.state_change(state, std::nullopt);
    // The accept loop counted the connection in.
    listener.live.fetch_sub(1, std::memory_order_relaxed);
}

void session::set_state(relay_state next) noexcept {
    listener.metrics.state_change(state, next);
    state = next;
}

void session::terminate(close_outcome why, std::optional<close_kind> kind) noexcept {
    if (terminating) return;
    terminating = true;
    note_outcome(why);
    set_state(relay_state::closing);
    close_socket(client, kind.value_or(listener.cfg.linger));
    close_socket(upstream, kind.value_or(listener.cfg.linger));
}

}  // namespace halfpipe
