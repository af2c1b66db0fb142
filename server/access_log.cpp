#include "server/access_log.hpp"

#include <chrono>

#include "common/log.hpp"
#include "server/endpoint_text.hpp"
#include "server/listener_runtime.hpp"
#include "server/session.hpp"
#include "server/worker.hpp"

namespace halfpipe {

namespace {
std::string endpoint_text(const std::optional<tcp::endpoint>& ep) { return ep ? halfpipe::endpoint_text(*ep) : "-"; }
}  // namespace

void log_access(const session& s) {
    if (!s.owner.access_log()) return;
    auto outcome = s.outcome.value_or(close_outcome{});
    auto duration = std::chrono::duration_cast<std::chrono::milliseconds>(session::clock::now() - s.started);
    log::get().info(
        "event=access listener={} conn={} client={} upstream={} duration_ms={} bytes_to_upstream={} "
        "bytes_to_client={} initiator={} how={} reason={} first_fin={}{}{}{}",
        s.listener.cfg.name, s.id, endpoint_text(s.client_endpoint), endpoint_text(s.upstream_endpoint),
        duration.count(), s.bytes[to_upstream], s.bytes[to_client], to_string(outcome.who), to_string(outcome.how),
        outcome.reason, s.first_fin ? to_string(*s.first_fin) : "-",
        s.destination.empty() ? std::string() : " mode=" + std::string(config::to_string(s.listener.cfg.mode)) +
                                                    " destination=" + s.destination,
        s.user.empty() ? std::string() : " user=" + s.user,
        s.error ? " error=\"" + s.error.message() + "\"" : std::string());
}

void log_rejected(const worker& owner, const listener_runtime& listener, const tcp_socket& client,
                  close_outcome why) {
    if (!owner.access_log()) return;
    boost::system::error_code ec;
    auto remote = client.remote_endpoint(ec);
    log::get().info(
        "event=access listener={} conn=- client={} upstream=- duration_ms=0 bytes_to_upstream=0 bytes_to_client=0 "
        "initiator={} how={} reason={}",
        listener.cfg.name, endpoint_text(ec ? std::nullopt : std::optional(remote)), to_string(why.who),
        to_string(why.how), why.reason);
}

}  // namespace halfpipe
