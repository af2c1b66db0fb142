#pragma once
// The admin HTTP endpoint: its own thread and io_context, so a slow scrape or a
// misbehaving admin client can never delay the relay.
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "common/net.hpp"
#include "config/config.hpp"
#include "server/admin/admin_backend.hpp"

namespace prometheus {
class Registry;
}

namespace halfpipe {

struct admin_options {
    config::host_port address;
    std::optional<std::string> token;  // required as "Authorization: Bearer ..." for POST
};

class admin_server {
public:
    admin_server(admin_options options, admin_backend& backend, std::shared_ptr<prometheus::Registry> registry);
    ~admin_server();
    admin_server(const admin_server&) = delete;
    admin_server& operator=(const admin_server&) = delete;

    void bind();   // throws std::system_error
    void start();  // listens (throws std::system_error), logs event=admin_listening, runs its thread
    void stop();
    // A successor answers at this address from now on: the listener closes, idle
    // keep-alive connections close, busy ones after their response. Thread-safe.
    void hand_over();
    // After hand_over, when the successor is gone: this process answers again, on a
    // new listening socket. Thread-safe.
    void take_back();
    tcp::endpoint local_endpoint() const { return bound_; }

private:
    net::awaitable<void> accept_loop();
    net::awaitable<void> serve(tcp::socket socket);
    bool close_longest_idle();

    struct connection;  // one per serve() frame, which owns it

    admin_options options_;
    admin_backend& backend_;
    std::shared_ptr<prometheus::Registry> registry_;
    // Before context_: its destructor ends the serve() frames, which leave this list.
    std::list<connection*> connections_;  // the slots taken, at most max_connections
    bool handed_over_ = false;
    net::io_context context_{1};
    // Runs until stop(), with no listener and no connection (after hand_over) too:
    // take_back posts to it then.
    net::executor_work_guard<net::io_context::executor_type> guard_{context_.get_executor()};
    tcp::acceptor acceptor_{context_};
    tcp::endpoint bound_;
    std::thread thread_;
};

}  // namespace halfpipe
