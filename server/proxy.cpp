#include "server/proxy.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "common/log.hpp"
#include "common/thread_cpu.hpp"
#include "common/net.hpp"
#include "server/admin/admin_backend.hpp"
#include "server/admin/admin_server.hpp"
#include "server/endpoint_text.hpp"
#include "server/listener.hpp"
#include "server/listener_runtime.hpp"
#include "server/metrics/proxy_metrics.hpp"
#include "server/name_resolver.hpp"
#include "server/password_checks.hpp"
#include "server/service_manager.hpp"
#include "server/reload.hpp"
#include "server/successor.hpp"
#include "server/worker.hpp"

namespace halfpipe {

namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;
constexpr auto drain_poll_interval = 50ms;
// The accept loops end as soon as each worker runs its acceptors' close.
constexpr auto accept_end_poll_interval = 1ms;
// After the drain timeout resets what is left, the sessions need a moment to unwind.
constexpr auto unwind_grace = 2s;
// Names looked up at once: a getaddrinfo waits for its DNS server, not a core. A
// name that never answers holds one thread for the resolver's own timeout.
constexpr std::size_t resolver_threads = 64;

kernel::endpoint census_endpoint(const tcp::endpoint& ep) {
    return kernel::endpoint::parse(ep.address().to_string(), ep.port());
}

// The config layer has checked every rule with the same parser.
forward::destination_acl make_acl(const config::listener_config& lc) {
    if (lc.acl.empty()) return forward::destination_acl::loopback_only();
    std::vector<forward::acl_rule> rules;
    for (const auto& r : lc.acl) rules.push_back(forward::parse_rule(r.allow ? "allow" : "deny", r.cidr, r.host, r.ports));
    return forward::destination_acl(std::move(rules));
}

class proxy final : public admin_backend {
public:
    proxy(const config::config& cfg, const process_context& process) : cfg_(cfg), process_(process), metrics_(cfg) {
        for (std::size_t i = 0; i < cfg.listeners.size(); ++i) {
            const auto& lc = cfg.listeners[i];
            auto l = std::make_unique<listener_runtime>(lc, i, metrics_.listener(i));
            if (config::is_ip_literal(lc.upstream.address.host))
                l->upstream_literal.emplace_back(net::ip::make_address(lc.upstream.address.host),
                                                 lc.upstream.address.port);
            if (lc.upstream.source_address) l->source_address = net::ip::make_address(*lc.upstream.source_address);
            if (lc.mode != config::listener_mode::reverse) l->acl = make_acl(lc);
            if (lc.auth) {
                if (!passwords_) passwords_.emplace();
                l->verifier = std::make_unique<forward::credential_verifier>(lc.auth->users, lc.auth->cache);
                l->passwords = &*passwords_;
            }
            if (lc.mode != config::listener_mode::reverse || l->upstream_literal.empty()) {
                if (!resolver_) resolver_.emplace(resolver_threads, cfg.resolve_timeout);
                l->resolver = &*resolver_;
            }
            l->all_bound = &all_bound_;
            listeners_.push_back(std::move(l));
        }
        for (unsigned i = 0; i < cfg.workers; ++i)
            workers_.push_back(std::make_unique<worker>(i, listeners_, session_ids_, cfg.access_log));
    }

    int run() {
        bind_all();
        std::optional<admin_server> admin;
        if (cfg_.admin) {
            admin.emplace(admin_options{*cfg_.admin, cfg_.admin_token}, *this, metrics_.registry());
            admin->bind();
            // A forward listener must not tunnel a client into the admin endpoint.
            all_bound_.push_back(admin->local_endpoint());
        }
        net::io_context control;
        net::signal_set signals(control, SIGINT, SIGTERM, SIGHUP);
        // Every address is bound: only now does any of them listen.
        const auto cpus = cfg_.cpu_affinity == config::cpu_affinity::spread ? allowed_cpus() : std::vector<int>{};
        for (auto& w : workers_) w->start(spread_cpu(cpus, w->index()));
        if (admin) admin->start();

        bool stopping = false;
        int stop_signals = 0;  // SIGTERM/SIGINT; a drain after a reload is not one
        auto start_drain = [&](int signo) {
            stopping = true;
            draining_ = true;
            log::get().info("event=draining signal={} live={} drain_timeout_ms={}", signo, live_sessions(),
                            cfg_.drain_timeout.count());
            for (auto& w : workers_) w->stop_accepting();
        };
        reload_control reload(
            control, process_.command,
            [&] {
                // Requests to the admin address reach the successor only: /readyz and
                // connection ids are its own.
                if (admin) admin->hand_over();
                start_drain(SIGHUP);
            },
            [&] {
                // The service manager knows this process as the main one again. Unless
                // told to stop meanwhile, it serves again, with the config it has.
                if (stop_signals > 0 || !stopping) return;
                for (auto& w : workers_) w->accept_again();
                if (admin) admin->take_back();
                stopping = false;
                draining_ = false;
                log::get().info("event=reload_taken_back live={}", live_sessions());
            });
        std::function<void(const boost::system::error_code&, int)> on_signal;
        on_signal = [&](const boost::system::error_code& ec, int signo) {
            if (ec) return;
            if (signo == SIGHUP) {
                if (stopping)
                    log::get().info("event=reload_ignored reason=draining");
                else
                    reload.request();
            } else if (++stop_signals == 1) {
                if (!stopping) {
                    reload.cancel();
                    notify_service_manager("STOPPING=1");
                    start_drain(signo);
                }  // else draining after a reload already
            } else {
                log::get().info("event=drain_aborted signal={}", signo);
                for (auto& w : workers_) w->terminate_all({initiator::proxy, close_how::timeout, "drain_aborted"});
            }
            signals.async_wait(on_signal);
        };
        signals.async_wait(on_signal);
        log_listening();
        // A successor's predecessor tells the service manager, once it has read this.
        if (process_.ready_fd)
            announce_ready(*process_.ready_fd);
        else
            notify_service_manager("READY=1");
        for (;;) {
            while (!stopping) control.run_one();
            // A connection whose accept completed as its acceptor closed is admitted
            // after the close: neither the live count nor a terminate_all covers it
            // before every accept loop has ended.
            const auto accept_end_deadline = clock::now() + unwind_grace;
            while (accepting() && clock::now() < accept_end_deadline && stopping)
                control.run_for(accept_end_poll_interval);
            const auto drain_deadline = clock::now() + cfg_.drain_timeout;
            while (live_sessions() > 0 && clock::now() < drain_deadline && stopping)
                control.run_for(drain_poll_interval);
            if (stopping) break;  // else taken back: serving again
        }
        if (auto left = live_sessions(); left > 0) {
            log::get().info("event=drain_timeout live={}", left);
            for (auto& w : workers_) w->terminate_all({initiator::proxy, close_how::timeout, "drain_timeout"});
            const auto unwind_deadline = clock::now() + unwind_grace;
            while (live_sessions() > 0 && clock::now() < unwind_deadline) control.run_for(drain_poll_interval);
        }
        if (admin) admin->stop();
        for (auto& w : workers_) w->stop();
        for (auto& w : workers_) w->join();
        log::get().info("event=stopped live={}", live_sessions());
        return 0;
    }

    net::awaitable<std::vector<session_snapshot>> snapshot_sessions() override {
        std::vector<session_snapshot> all;
        for (auto& w : workers_) {
            auto part = co_await net::co_spawn(w->context(), w->snapshot_sessions(), net::use_awaitable);
            all.insert(all.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
        }
        co_return all;
    }

    net::awaitable<bool> close_session(std::uint64_t id, close_kind how) override {
        for (auto& w : workers_)
            if (co_await net::co_spawn(w->context(), w->close_session(id, how), net::use_awaitable)) co_return true;
        co_return false;
    }

    bool draining() const override { return draining_; }

    kernel::census_query census_query() const override {
        kernel::census_query q;
        bool any_v6 = false;
        for (const auto& l : listeners_) {
            for (const auto& ep : l->bound) {
                q.listeners.emplace_back(l->cfg.name, census_endpoint(ep));
                any_v6 |= ep.address().is_v6();
            }
            for (const auto& ep : l->upstreams_seen()) {
                q.upstreams.emplace_back(l->cfg.name, census_endpoint(ep));
                any_v6 |= ep.address().is_v6();
            }
        }
        // Without an IPv6 endpoint no socket of ours is in the IPv6 table: skip that dump.
        q.ipv4_mapped = any_v6;
        return q;
    }

    std::vector<std::string> listener_names() const override {
        std::vector<std::string> names;
        for (const auto& l : listeners_) names.push_back(l->cfg.name);
        return names;
    }

private:
    // The first worker's bind fixes the port (port 0 lets the kernel pick); the other
    // workers bind the same port, each with its own SO_REUSEPORT socket.
    void bind_all() {
        for (auto& l : listeners_) {
            for (const auto& bind : l->cfg.bind) {
                tcp::endpoint endpoint(net::ip::make_address(bind.host), bind.port);
                for (auto& w : workers_) {
                    auto acceptor = open_acceptor(w->context(), endpoint, l->cfg);
                    endpoint = acceptor.local_endpoint();
                    w->add_acceptor(*l, std::move(acceptor));
                }
                l->bound.push_back(endpoint);
                all_bound_.push_back(endpoint);
            }
        }
    }

    // Logged only once the workers accept and signals are handled: a supervisor (or
    // a test) that waits for this line may connect or send SIGTERM right away.
    void log_listening() const {
        for (const auto& l : listeners_)
            for (const auto& endpoint : l->bound)
                log::get().info("event=listening listener={} address={} workers={}", l->cfg.name,
                                endpoint_text(endpoint), workers_.size());
    }

    bool accepting() const {
        return std::any_of(workers_.begin(), workers_.end(), [](const auto& w) { return w->accepting(); });
    }

    std::size_t live_sessions() const {
        std::size_t total = 0;
        for (const auto& l : listeners_) total += l->live.load(std::memory_order_relaxed);
        return total;
    }

    const config::config& cfg_;
    const process_context& process_;
    proxy_metrics metrics_;
    std::atomic<std::uint64_t> session_ids_{0};
    std::atomic<bool> draining_{false};
    // Declared before the workers: suspended sessions refer to their listener until
    // the workers are destroyed.
    std::vector<tcp::endpoint> all_bound_;
    std::vector<std::unique_ptr<listener_runtime>> listeners_;
    std::vector<std::unique_ptr<worker>> workers_;
    // Declared after the workers: joined first, so no password check can complete
    // into a destroyed io_context.
    std::optional<password_checks> passwords_;
    // Declared after the workers, for the same reason: destroyed first, it sends no
    // answer to a destroyed io_context.
    std::optional<name_resolver> resolver_;
};

}  // namespace

int run_proxy(const config::config& cfg, const process_context& process) { return proxy(cfg, process).run(); }

}  // namespace halfpipe
