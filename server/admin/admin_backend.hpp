#pragma once
// What the admin endpoint may ask of the proxy. The proxy answers on its worker
// threads; the admin thread only awaits the answers.
#include <cstdint>
#include <string>
#include <vector>

#include "common/close_kind.hpp"
#include "common/net.hpp"
#include "server/kernel/tcp_socket_census.hpp"
#include "server/session_snapshot.hpp"

namespace halfpipe {

class admin_backend {
public:
    virtual ~admin_backend() = default;
    virtual net::awaitable<std::vector<session_snapshot>> snapshot_sessions() = 0;
    // false when no live session has that id
    virtual net::awaitable<bool> close_session(std::uint64_t id, close_kind how) = 0;
    virtual bool draining() const = 0;
    virtual kernel::census_query census_query() const = 0;
    virtual std::vector<std::string> listener_names() const = 0;
};

}  // namespace halfpipe
