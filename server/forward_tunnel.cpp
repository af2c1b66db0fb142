#include "server/forward_tunnel.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <string>

#include "server/forward/connect_request.hpp"
#include "server/forward/socks5.hpp"
#include "server/listener_runtime.hpp"
#include "server/password_checks.hpp"
#include "server/session.hpp"
#include "server/socket_options.hpp"
#include "server/upstream_connector.hpp"

// GCC 12 inlines Asio's frame allocator (aligned_alloc) into open_forward_tunnel's
// frame and then takes the frame's own operator delete, which frees it with
// std::free, for a mismatch: a false positive of -Wmismatched-new-delete.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace halfpipe {

namespace {

using namespace net::experimental::awaitable_operators;
using clock = session::clock;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
// The handshake is small: a CONNECT head is bounded by the parser, SOCKS5 by its format.
constexpr std::size_t handshake_read_size = 4096;

struct handshake_reader {
    tcp_socket& client;
    net::steady_timer deadline;
    std::array<char, handshake_read_size> buffer{};
    bool timed_out = false;

    // For waits that are not raced against the deadline (a password check).
    bool expired() {
        if (deadline.expiry() <= net::steady_timer::clock_type::now()) timed_out = true;
        return timed_out;
    }

    // nullopt: the deadline passed (timed_out), the client left, or it reset.
    net::awaitable<std::optional<std::string_view>> read() {
        auto result = co_await (client.async_read_some(net::buffer(buffer), use_tuple) || deadline.async_wait(use_tuple));
        if (result.index() == 1) {
            timed_out = true;
            co_return std::nullopt;
        }
        auto [ec, n] = std::get<0>(result);
        if (ec || n == 0) co_return std::nullopt;
        co_return std::string_view(buffer.data(), n);
    }

    net::awaitable<bool> write(std::string_view bytes) {
        if (bytes.empty()) co_return true;
        auto result = co_await (net::async_write(client, net::buffer(bytes), use_tuple) || deadline.async_wait(use_tuple));
        if (result.index() == 1) {
            timed_out = true;  // the client does not read
            co_return false;
        }
        auto [ec, n] = std::get<0>(result);
        co_return !ec;
    }
};

forward::connect_failure failure_of(const connect_result& r) {
    if (r.reason == "destination_denied") return forward::connect_failure::denied;
    if (r.reason == "resolve_failed") return forward::connect_failure::resolve_failed;
    if (r.reason == "connect_timeout") return forward::connect_failure::timed_out;
    return forward::classify_errno(r.error.value());
}

// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) reaches the IPv4 address itself.
net::ip::address unmapped(const net::ip::address& a) {
    if (a.is_v6() && a.to_v6().is_v4_mapped()) return net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6());
    return a;
}

// Linux sends a connect to the unspecified address (0.0.0.0, ::) to loopback: past
// every ACL rule written for real addresses. No client has a reason to ask for it.
bool is_unspecified_destination(const tcp::endpoint& ep) { return unmapped(ep.address()).is_unspecified(); }

// Connecting to one of our own listeners would loop a client back into halfpipe.
bool is_own_listener(const listener_runtime& l, const tcp::endpoint& ep) {
    const auto to = unmapped(ep.address());
    for (const auto& other : l.all_bound ? *l.all_bound : l.bound)
        if (other.port() == ep.port() &&
            (unmapped(other.address()) == to || other.address().is_unspecified() || to.is_loopback()))
            return true;
    return false;
}

forward::ip_address to_ip(const net::ip::address& a) {
    std::array<std::uint8_t, 16> bytes{};
    if (a.is_v4()) {
        auto v4 = a.to_v4().to_bytes();
        std::copy(v4.begin(), v4.end(), bytes.begin());
        return forward::ip_address::from_bytes(bytes, false);
    }
    auto v6 = a.to_v6().to_bytes();
    std::copy(v6.begin(), v6.end(), bytes.begin());
    return forward::ip_address::from_bytes(bytes, true);
}

struct request {
    forward::target target;
    std::string pipelined;
};

// The ACL, not a peer, turned the client away: no upstream was contacted.
constexpr close_outcome denied{initiator::proxy, close_how::limit, "destination_denied"};

close_outcome incomplete(const handshake_reader& io) {
    if (io.timed_out) return {initiator::proxy, close_how::timeout, "handshake_incomplete"};
    return {initiator::client, close_how::fin, "handshake_incomplete"};  // it left before asking
}

// A reply could not be written: the client does not read (the deadline passed), or
// it is gone.
close_outcome unanswered(const handshake_reader& io) {
    if (io.timed_out) return incomplete(io);
    return {initiator::client, close_how::error, "handshake_incomplete"};
}

// The users file, not a peer, turned the client away.
constexpr close_outcome auth_required{initiator::proxy, close_how::limit, "auth_required"};
constexpr close_outcome auth_failed{initiator::proxy, close_how::limit, "auth_failed"};
constexpr close_outcome auth_overloaded{initiator::proxy, close_how::limit, "auth_overloaded"};
constexpr close_outcome bad_request{initiator::client, close_how::error, "bad_request"};

// Counts a client turned away and marks its session as closing.
void note_rejection(session& s, close_outcome why) {
    // Failed connects are counted as connect errors instead.
    const auto& reasons = forward_rejection_reasons;
    if (std::find(reasons.begin(), reasons.end(), why.reason) != reasons.end())
        s.listener.metrics.forward_rejected(why.reason);
    s.note_outcome(why);
    s.set_state(relay_state::closing);
}

// For a client that gets no answer: it left, or its time is up.
void give_up(session& s, close_outcome why) {
    note_rejection(s, why);
    s.terminating = true;
    close_socket(s.client, close_kind::graceful_fin);
}

// Sends an error reply and closes the way RFC 9112 §9.6 asks (a lingering close):
// FIN first, then what the client still sends is read and dropped until it closes
// too, for at most timeouts.lingering_close. A close with unread bytes, or bytes
// arriving after the close, makes the kernel answer with an RST, which discards our
// unsent or unacknowledged reply, and a client stack may drop a reply it has not
// read yet when the RST arrives. While it lingers the session is not terminating,
// so that drain expiry or an admin close still cut it short: terminate() closes the
// socket, which ends the read.
net::awaitable<void> refuse(session& s, handshake_reader& io, std::string_view reply, close_outcome why) {
    if (!co_await io.write(reply)) {
        give_up(s, why);
        co_return;
    }
    note_rejection(s, why);
    if (const auto linger = s.listener.cfg.timeouts.lingering_close) {
        boost::system::error_code ignored;
        s.client.shutdown(tcp::socket::shutdown_send, ignored);
        io.deadline.expires_after(*linger);
        while (!s.terminating && co_await io.read()) {
        }
    }
    if (s.terminating) co_return;
    s.terminating = true;
    close_socket(s.client, close_kind::graceful_fin);
}

// RFC 9110 §11.7.1: a proxy asks with 407 and Proxy-Authenticate (401 is an origin's).
// Wrong credentials get the same answer as none, and the connection is closed; while
// too many checks are queued, 503 at once.
net::awaitable<bool> authenticate_connect(session& s, handshake_reader& io, const forward::connect_head& head) {
    std::optional<forward::basic_credentials> credentials;
    if (head.proxy_authorization) credentials = forward::decode_basic_credentials(*head.proxy_authorization);
    auto verdict = password_checks::verdict::rejected;
    if (credentials)
        verdict = co_await s.listener.passwords->check(*s.listener.verifier, credentials->user, credentials->password);
    if (io.expired()) {
        give_up(s, incomplete(io));
        co_return false;
    }
    if (verdict == password_checks::verdict::accepted) {
        s.user = credentials->user;
        co_return true;
    }
    if (verdict == password_checks::verdict::busy) {
        const auto response = forward::error_response(503);
        co_await refuse(s, io, response, auth_overloaded);
        co_return false;
    }
    const auto response = forward::proxy_auth_required(s.listener.cfg.auth->realm);
    co_await refuse(s, io, response, credentials ? auth_failed : auth_required);
    co_return false;
}

net::awaitable<std::optional<request>> read_connect(session& s, handshake_reader& io) {
    forward::connect_head_parser parser;
    for (;;) {
        auto bytes = co_await io.read();
        if (!bytes) {
            give_up(s, incomplete(io));
            co_return std::nullopt;
        }
        auto r = parser.feed(*bytes);
        if (r.state == forward::connect_parse_result::status::error) {
            const auto response = forward::error_response(r.http_status);
            co_await refuse(s, io, response, bad_request);
            co_return std::nullopt;
        }
        if (r.state == forward::connect_parse_result::status::done) {
            // Named in the log even when the client is turned away before it gets there.
            s.destination = parser.head().target.authority();
            if (s.listener.verifier && !co_await authenticate_connect(s, io, parser.head())) co_return std::nullopt;
            co_return request{parser.head().target, std::string(bytes->substr(r.consumed))};
        }
    }
}

net::awaitable<std::optional<request>> read_socks5(session& s, handshake_reader& io, forward::socks5_session& socks) {
    for (;;) {
        auto bytes = co_await io.read();
        if (!bytes) {
            give_up(s, incomplete(io));
            co_return std::nullopt;
        }
        auto r = socks.feed(*bytes);
        std::optional<close_outcome> rejection;
        if (r.state == forward::socks5_result::status::authenticate) {
            const std::string user = r.username;
            const std::string password = r.password;
            const auto verdict = co_await s.listener.passwords->check(*s.listener.verifier, user, password);
            if (io.expired()) {
                give_up(s, incomplete(io));
                co_return std::nullopt;
            }
            const bool ok = verdict == password_checks::verdict::accepted;
            // The method choice (05 02) read with the credentials goes out before the verdict.
            std::string replies = std::move(r.reply);
            r = socks.auth_verdict(ok);
            r.reply = replies + r.reply;
            if (!ok) rejection = verdict == password_checks::verdict::busy ? auth_overloaded : auth_failed;
            if (ok) s.user = user;
        }
        if (r.state == forward::socks5_result::status::failed) {
            close_outcome why = bad_request;
            if (rejection)
                why = *rejection;
            else if (r.no_acceptable_method && s.listener.verifier)
                why = auth_required;
            co_await refuse(s, io, r.reply, why);
            co_return std::nullopt;
        }
        if (!co_await io.write(r.reply)) {
            give_up(s, unanswered(io));
            co_return std::nullopt;
        }
        if (r.state == forward::socks5_result::status::request)
            co_return request{socks.request().target, socks.take_pipelined()};
    }
}

}  // namespace

net::awaitable<bool> open_forward_tunnel(session& s) {
    auto& listener = s.listener;
    const bool is_connect = listener.cfg.mode == config::listener_mode::connect;
    handshake_reader io{s.client, net::steady_timer(s.client.get_executor(), listener.cfg.timeouts.handshake)};
    // Username/password (RFC 1929) is the only method offered when the listener has users.
    forward::socks5_session socks(forward::socks5_options{listener.verifier ? forward::socks5_auth::username_password
                                                                            : forward::socks5_auth::none});
    // if/else, not ?: : GCC 12 miscompiles co_await inside a conditional expression.
    std::optional<request> req;
    if (is_connect)
        req = co_await read_connect(s, io);
    else
        req = co_await read_socks5(s, io, socks);
    if (!req) co_return false;
    s.destination = req->target.authority();

    auto failure_reply = [&](forward::connect_failure failure) {
        return is_connect ? forward::error_response(forward::http_status_for(failure))
                          : forward::socks5_reply_bytes(forward::socks5_reply_for(failure));
    };
    const auto& acl = *listener.acl;
    if (req->target.kind == forward::host_kind::name && !acl.check_name(req->target.host, req->target.port).allowed) {
        const auto reply = failure_reply(forward::connect_failure::denied);
        co_await refuse(s, io, reply, denied);
        co_return false;
    }

    const std::string requested = req->target.host;
    // Named, not temporaries: GCC 12 mishandles temporaries that live across a co_await.
    const endpoint_filter allowed = [&](const tcp::endpoint& ep) {
        return !is_unspecified_destination(ep) && !is_own_listener(listener, ep) &&
               acl.check_address(requested, to_ip(ep.address()), ep.port()).allowed;
    };
    const upstream_target target{req->target.host, req->target.port};
    tcp::endpoint connected;
    auto result = co_await connect_upstream(listener, target, s.upstream, connected, s.terminating, allowed);
    if (s.terminating) co_return false;
    if (!result.ok) {
        close_socket(s.upstream, close_kind::abortive_rst);
        const auto reply = failure_reply(failure_of(result));
        if (result.reason == "destination_denied") {
            co_await refuse(s, io, reply, denied);
        } else {
            listener.metrics.connect_error(result.reason);
            s.error = result.error;
            const close_outcome why{initiator::upstream, close_how::error, result.reason};
            co_await refuse(s, io, reply, why);
        }
        co_return false;
    }
    s.upstream_endpoint = connected;
    boost::system::error_code ignored;
    auto local = s.upstream.local_endpoint(ignored);
    const auto established = is_connect ? forward::connection_established()
                                        : forward::socks5_reply_bytes(forward::socks5_reply::succeeded,
                                                                      to_ip(local.address()), local.port());
    if (!co_await io.write(established)) {
        give_up(s, unanswered(io));
        close_socket(s.upstream, close_kind::abortive_rst);
        co_return false;
    }
    // What the client sent right after its request is tunnel payload, not to be lost.
    if (!req->pipelined.empty()) {
        auto [ec, n] = co_await net::async_write(s.upstream, net::buffer(req->pipelined), use_tuple);
        if (!ec) {
            s.bytes[to_upstream] += n;
            listener.metrics.bytes[to_upstream]->Increment(static_cast<double>(n));
        }
    }
    co_return true;
}

}  // namespace halfpipe
