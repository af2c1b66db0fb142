#include "server/proxy.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <memory>
#include <vector>

#include "common/log.hpp"
#include "common/net.hpp"
#include "server/listener.hpp"
#include "server/listener_runtime.hpp"
#include "server/worker.hpp"

namespace halfpipe {

namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;
constexpr auto drain_poll_interval = 50ms;
// After the drain timeout resets what is left, the sessions need a moment to unwind.
constexpr auto unwind_grace = 2s;

std::string endpoint_text(const tcp::endpoint& ep) {
    if (ep.address().is_v6()) return "[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
    return ep.address().to_string() + ":" + std::to_string(ep.port());
}

std::vector<std::unique_ptr<listener_runtime>> make_listeners(const config::config& cfg, proxy_metrics& metrics) {
    std::vector<std::unique_ptr<listener_runtime>> listeners;
    for (std::size_t i = 0; i < cfg.listeners.size(); ++i) {
        const auto& lc = cfg.listeners[i];
        auto l = std::make_unique<listener_runtime>(lc, i, metrics.listener(i));
        if (config::is_ip_literal(lc.upstream.address.host))
            l->upstream_literal.emplace_back(net::ip::make_address(lc.upstream.address.host), lc.upstream.address.port);
        if (lc.upstream.source_address) l->source_address = net::ip::make_address(*lc.upstream.source_address);
        listeners.push_back(std::move(l));
    }
    return listeners;
}

// The first worker's bind fixes the port (port 0 lets the kernel pick); the other
// workers bind the same port, each with its own SO_REUSEPORT socket.
void bind_all(std::vector<std::unique_ptr<listener_runtime>>& listeners, std::vector<std::unique_ptr<worker>>& workers) {
    for (auto& l : listeners) {
        for (const auto& bind : l->cfg.bind) {
            tcp::endpoint endpoint(net::ip::make_address(bind.host), bind.port);
            for (auto& w : workers) {
                auto acceptor = open_acceptor(w->context(), endpoint, l->cfg.backlog);
                endpoint = acceptor.local_endpoint();
                w->add_acceptor(*l, std::move(acceptor));
            }
            l->bound.push_back(endpoint);
        }
    }
}

// Logged only once the workers accept and signals are handled: a supervisor (or
// a test) that waits for this line may connect or send SIGTERM right away.
void log_listening(const std::vector<std::unique_ptr<listener_runtime>>& listeners, std::size_t workers) {
    for (const auto& l : listeners)
        for (const auto& endpoint : l->bound)
            log::get().info("event=listening listener={} address={} workers={}", l->cfg.name,
                            endpoint_text(endpoint), workers);
}

std::size_t live_sessions(const std::vector<std::unique_ptr<listener_runtime>>& listeners) {
    std::size_t total = 0;
    for (const auto& l : listeners) total += l->live.load(std::memory_order_relaxed);
    return total;
}

}  // namespace

int run_proxy(const config::config& cfg) {
    std::atomic<std::uint64_t> session_ids{0};
    proxy_metrics metrics(cfg);
    auto listeners = make_listeners(cfg, metrics);
    std::vector<std::unique_ptr<worker>> workers;
    for (unsigned i = 0; i < cfg.workers; ++i)
        workers.push_back(std::make_unique<worker>(i, listeners, session_ids, cfg.access_log));
    bind_all(listeners, workers);

    net::io_context control;
    net::signal_set signals(control, SIGINT, SIGTERM);
    for (auto& w : workers) w->start();

    int signals_seen = 0;
    std::function<void(const boost::system::error_code&, int)> on_signal;
    on_signal = [&](const boost::system::error_code& ec, int signo) {
        if (ec) return;
        if (++signals_seen == 1) {
            log::get().info("event=draining signal={} live={} drain_timeout_ms={}", signo, live_sessions(listeners),
                            cfg.drain_timeout.count());
            for (auto& w : workers) w->stop_accepting();
        } else {
            log::get().info("event=drain_aborted signal={}", signo);
            for (auto& w : workers) w->terminate_all({initiator::proxy, close_how::timeout, "drain_aborted"});
        }
        signals.async_wait(on_signal);
    log_listening(listeners, workers.size());
    };
    signals.async_wait(on_signal);
    log_listening(listeners, workers.size());
    // Signal handling runs on this thread; wait for the first signal.
    while (signals_seen == 0) control.run_one();

    const auto drain_deadline = clock::now() + cfg.drain_timeout;
    while (live_sessions(listeners) > 0 && clock::now() < drain_deadline) control.run_for(drain_poll_interval);
    if (auto left = live_sessions(listeners); left > 0) {
        log::get().info("event=drain_timeout live={}", left);
        for (auto& w : workers) w->terminate_all({initiator::proxy, close_how::timeout, "drain_timeout"});
        const auto unwind_deadline = clock::now() + unwind_grace;
        while (live_sessions(listeners) > 0 && clock::now() < unwind_deadline) control.run_for(drain_poll_interval);
    }
    for (auto& w : workers) w->stop();
    for (auto& w : workers) w->join();
    log::get().info("event=stopped live={}", live_sessions(listeners));
    return 0;
}

}  // namespace halfpipe
