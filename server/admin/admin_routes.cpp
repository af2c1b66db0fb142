#include "server/admin/admin_routes.hpp"

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <boost/json.hpp>
#include <charconv>
#include <sstream>

#include "common/log.hpp"
#include "server/metrics/scrape_time_metrics.hpp"

namespace halfpipe {

namespace {

constexpr std::string_view connections_prefix = "/connections/";
constexpr std::string_view close_suffix = "/close";

admin_response json_response(http::status status, unsigned version, const boost::json::value& body) {
    admin_response r{status, version};
    r.set(http::field::content_type, "application/json");
    r.body() = boost::json::serialize(body) + "\n";
    return r;
}

admin_response method_not_allowed(unsigned version, std::string_view allow) {
    auto r = plain_response(http::status::method_not_allowed, version, "method not allowed\n");
    r.set(http::field::allow, allow);
    return r;
}

admin_response metrics(const admin_context& ctx, unsigned version) {
    auto families = ctx.registry->Collect();
    try {
        auto kernel = kernel_socket_families(ctx.backend.census_query(), ctx.backend.listener_names());
        families.insert(families.end(), std::make_move_iterator(kernel.begin()), std::make_move_iterator(kernel.end()));
    } catch (const std::exception& e) {
        // The relay's own metrics are still worth serving when sock_diag fails.
        log::get().warn("event=census_failed error=\"{}\"", e.what());
    }
    auto process = process_families();
    families.insert(families.end(), std::make_move_iterator(process.begin()), std::make_move_iterator(process.end()));
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, families);
    admin_response r{http::status::ok, version};
    r.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    r.body() = std::move(out).str();
    return r;
}

boost::json::object socket_json(const socket_snapshot& s) {
    boost::json::object o;
    o["state"] = s.kernel_state ? boost::json::value(std::string(kernel::state_name(
                                      static_cast<kernel::tcp_state>(*s.kernel_state))))
                                : boost::json::value(nullptr);
    o["send_queue_bytes"] = s.send_queue;
    o["receive_queue_bytes"] = s.receive_queue;
    o["rtt_seconds"] = s.rtt_us / 1e6;
    o["retransmits"] = s.retransmits;
    return o;
}

net::awaitable<admin_response> connections(const admin_context& ctx, unsigned version) {
    auto sessions = co_await ctx.backend.snapshot_sessions();
    boost::json::array list;
    for (const auto& s : sessions) {
        boost::json::object o;
        o["id"] = s.id;
        o["listener"] = s.listener;
        o["client"] = s.client;
        o["upstream"] = s.upstream;
        o["age_seconds"] = s.age_seconds;
        o["bytes_to_upstream"] = s.bytes_to_upstream;
        o["bytes_to_client"] = s.bytes_to_client;
        o["state"] = s.state;
        o["client_socket"] = socket_json(s.client_socket);
        o["upstream_socket"] = socket_json(s.upstream_socket);
        list.push_back(std::move(o));
    }
    co_return json_response(http::status::ok, version, list);
}

// Compares every byte whatever the first difference, so the time taken says nothing
// about how much of a guessed token was right.
bool same_secret(std::string_view a, std::string_view b) {
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.size() ? b.size() : 1)]);
    return diff == 0 && !b.empty();
}

bool authorized(const admin_context& ctx, const admin_request& request) {
    if (!ctx.options.token) return true;
    std::string_view header = request[http::field::authorization];
    constexpr std::string_view scheme = "bearer ";
    if (header.size() < scheme.size()) return false;
    for (std::size_t i = 0; i < scheme.size(); ++i)  // the scheme is case-insensitive (RFC 9110)
        if (std::tolower(static_cast<unsigned char>(header[i])) != scheme[i]) return false;
    return same_secret(header.substr(scheme.size()), *ctx.options.token);
}

// POST /connections/{id}/close?how=fin|rst
net::awaitable<admin_response> close_connection(const admin_context& ctx, const admin_request& request,
                                                std::string_view path, std::string_view query) {
    const unsigned version = request.version();
    if (!authorized(ctx, request)) {
        auto r = plain_response(http::status::unauthorized, version, "bearer token required\n");
        r.set(http::field::www_authenticate, "Bearer realm=\"halfpipe\"");
        co_return r;
    }
    auto id_text = path.substr(connections_prefix.size(), path.size() - connections_prefix.size() - close_suffix.size());
    std::uint64_t id = 0;
    auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
    if (ec != std::errc{} || end != id_text.data() + id_text.size())
        co_return plain_response(http::status::bad_request, version, "connection id must be a number\n");
    close_kind how = close_kind::abortive_rst;
    if (query == "how=fin")
        how = close_kind::graceful_fin;
    else if (!query.empty() && query != "how=rst")
        co_return plain_response(http::status::bad_request, version, "how must be fin or rst\n");
    if (!co_await ctx.backend.close_session(id, how))
        co_return plain_response(http::status::not_found, version, "no such connection\n");
    co_return json_response(http::status::ok, version, {{"closed", id}, {"how", to_string(how)}});
}

}  // namespace

admin_response plain_response(http::status status, unsigned version, std::string body) {
    admin_response r{status, version};
    r.set(http::field::content_type, "text/plain; charset=utf-8");
    r.body() = std::move(body);
    return r;
}

net::awaitable<admin_response> route(const admin_context& ctx, const admin_request& request) {
    std::string_view target = request.target();
    std::string_view path = target.substr(0, target.find('?'));
    std::string_view query = path.size() < target.size() ? target.substr(path.size() + 1) : std::string_view{};
    const auto method = request.method();
    const unsigned version = request.version();
    const bool get = method == http::verb::get;

    if (path == "/metrics") co_return get ? metrics(ctx, version) : method_not_allowed(version, "GET");
    if (path == "/healthz") co_return get ? plain_response(http::status::ok, version, "ok\n") : method_not_allowed(version, "GET");
    if (path == "/readyz") {
        if (!get) co_return method_not_allowed(version, "GET");
        co_return ctx.backend.draining() ? plain_response(http::status::service_unavailable, version, "draining\n")
                                         : plain_response(http::status::ok, version, "ready\n");
    }
    if (path == "/connections") {
        if (!get) co_return method_not_allowed(version, "GET");
        co_return co_await connections(ctx, version);
    }
    if (path.starts_with(connections_prefix) && path.ends_with(close_suffix) &&
        path.size() > connections_prefix.size() + close_suffix.size()) {
        if (method != http::verb::post) co_return method_not_allowed(version, "POST");
        co_return co_await close_connection(ctx, request, path, query);
    }
    co_return plain_response(http::status::not_found, version, "not found\n");
}

}  // namespace halfpipe
