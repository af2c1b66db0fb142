#include "server/admin/admin_server.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <chrono>

#include "common/log.hpp"
#include "common/thread_name.hpp"
#include "common/thread_signals.hpp"
#include "server/admin/admin_routes.hpp"
#include "server/socket_options.hpp"

namespace halfpipe {

namespace beast = boost::beast;

namespace {

using namespace std::chrono_literals;
using namespace net::experimental::awaitable_operators;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
constexpr auto request_deadline = 10s;  // a slow client cannot hold a connection open
constexpr std::size_t header_limit = 8 * 1024;
constexpr std::size_t body_limit = 64 * 1024;
constexpr std::size_t max_connections = 64;
constexpr auto lingering_close_time = 2s;
constexpr int admin_nice = 10;

// After an error reply the client may still be sending (a body over the limit, a
// head still arriving): our FIN goes first, then its bytes are read and dropped until
// it closes, for a bounded time (RFC 9112 §9.6). Closing over them instead makes the
// kernel answer with an RST, which can cost the client the reply it has not read yet.
net::awaitable<void> lingering_close(beast::tcp_stream& stream) {
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.expires_after(lingering_close_time);
    std::array<char, 4096> dropped;
    for (;;) {
        auto [ec, n] = co_await stream.async_read_some(net::buffer(dropped), use_tuple);
        if (ec) co_return;
    }
}

}  // namespace

struct admin_server::connection {
    tcp::socket& socket;
    bool awaiting_request = false;  // no byte of the next request read yet
    std::chrono::steady_clock::time_point idle_since{};

    // Closing it then loses nothing: its client reopens it as after any keep-alive
    // timeout. Bytes in the kernel are a request on its way, and closing over them
    // would send RST.
    bool idle() const {
        boost::system::error_code ignored;
        return awaiting_request && socket.available(ignored) == 0;
    }
};

admin_server::admin_server(admin_options options, admin_backend& backend, std::shared_ptr<prometheus::Registry> registry)
    : options_(std::move(options)), backend_(backend), registry_(std::move(registry)) {}

admin_server::~admin_server() { stop(); }

void admin_server::bind() {
    tcp::endpoint endpoint(net::ip::make_address(options_.address.host), options_.address.port);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    // In a handover the successor binds this port while this process drains, as it
    // does the listeners; until this one exits the kernel spreads scrapes over both.
    set_reuse_port(acceptor_);
    acceptor_.bind(endpoint);
    bound_ = acceptor_.local_endpoint();
}

void admin_server::start() {
    acceptor_.listen();
    const auto bound = bound_;
    auto host = bound.address().to_string();
    log::get().info("event=admin_listening address={}:{}", bound.address().is_v6() ? "[" + host + "]" : host,
                    bound.port());
    net::co_spawn(context_, accept_loop(), [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
    });
    thread_ = started_without_signals([this] {
        return std::thread([this] {
            name_this_thread("halfpipe-admin");
            // A scrape walks every TCP socket of the host through sock_diag: where the
            // cores are busy, the relay's threads must come first. Linux takes a nice
            // value per thread; failing to set it only costs that preference.
            ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), admin_nice);
            context_.run();
        });
    });
}

void admin_server::stop() {
    if (!thread_.joinable()) return;
    context_.stop();
    thread_.join();
}

net::awaitable<void> admin_server::accept_loop() {
    net::steady_timer backoff(context_);
    for (;;) {
        auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
        // Closed by hand_over: a take_back gives the new socket a loop of its own.
        if (!acceptor_.is_open() || ec == net::error::operation_aborted) co_return;
        if (ec) {
            backoff.expires_after(100ms);  // descriptor exhaustion: never spin
            co_await backoff.async_wait(use_tuple);
            continue;
        }
        // Out of slots, do as nginx does: turning the new connection away would let a
        // client that keeps its connections alive lock out scrapes and operators.
        if (connections_.size() >= max_connections && !close_longest_idle()) {
            boost::system::error_code ignored;
            socket.close(ignored);
            continue;
        }
        net::co_spawn(context_, serve(std::move(socket)), [](std::exception_ptr e) {
            if (e) log::get().error("event=admin_error error=bug_in_request_handling");
        });
    }
}

void admin_server::hand_over() {
    net::post(context_, [this] {
        handed_over_ = true;
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        // A scraper's kept-alive connection would otherwise keep reaching this process
        // until it exits.
        while (close_longest_idle()) {
        }
    });
}

void admin_server::take_back() {
    net::post(context_, [this] {
        // The old acceptor's loop ends on its own; the new socket gets a new loop.
        tcp::acceptor acceptor(context_);
        try {
            acceptor.open(bound_.protocol());
            acceptor.set_option(net::socket_base::reuse_address(true));
            set_reuse_port(acceptor);
            acceptor.bind(bound_);
            acceptor.listen();
        } catch (const std::system_error& e) {
            log::get().error("event=admin_listen_failed error=\"{}\"", e.what());
            return;
        }
        handed_over_ = false;
        acceptor_ = std::move(acceptor);
        net::co_spawn(context_, accept_loop(), [](std::exception_ptr e) {
            if (e) std::rethrow_exception(e);
        });
    });
}

bool admin_server::close_longest_idle() {
    connection* victim = nullptr;
    for (auto* c : connections_)
        if (c->idle() && (!victim || c->idle_since < victim->idle_since)) victim = c;
    if (!victim) return false;
    // The slot is free from now on, not from when the victim's frame next runs: a
    // second new connection meanwhile must pick another one.
    connections_.remove(victim);
    boost::system::error_code ignored;
    victim->socket.shutdown(tcp::socket::shutdown_send, ignored);  // FIN: no request was pending
    victim->socket.close(ignored);
    return true;
}

net::awaitable<void> admin_server::serve(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    net::steady_timer idle_deadline(context_);
    connection self{stream.socket()};
    connections_.push_back(&self);
    struct slot_guard {
        std::list<connection*>& slots;
        connection* self;
        ~slot_guard() { slots.remove(self); }  // nothing left to remove once evicted
    } guard{connections_, &self};

    admin_context ctx{options_, backend_, registry_};
    for (;;) {
        const auto deadline = std::chrono::steady_clock::now() + request_deadline;
        if (buffer.size() == 0) {
            // Wait for readiness, not in async_read: a read may already hold the first
            // bytes of a request while its completion waits to run, unseen by
            // close_longest_idle(); readiness leaves them in the kernel, where it looks.
            self.awaiting_request = true;
            self.idle_since = std::chrono::steady_clock::now();
            idle_deadline.expires_at(deadline);
            auto ready = co_await (stream.socket().async_wait(tcp::socket::wait_read, use_tuple) ||
                                   idle_deadline.async_wait(use_tuple));
            self.awaiting_request = false;
            // The deadline passed, or close_longest_idle() closed the socket (however the wait ended).
            if (ready.index() == 1 || !stream.socket().is_open()) break;
        }
        http::request_parser<http::string_body> parser;
        parser.header_limit(header_limit);
        parser.body_limit(body_limit);
        stream.expires_at(deadline);
        auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
        if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::connection_reset)
            break;
        if (ec) {
            auto status = ec == http::error::body_limit     ? http::status::payload_too_large
                          : ec == http::error::header_limit ? http::status::request_header_fields_too_large
                                                            : http::status::bad_request;
            auto response = plain_response(status, 11, std::string(obsolete_reason(status)) + "\n");
            response.keep_alive(false);
            stream.expires_after(request_deadline);
            auto [write_error, written] = co_await http::async_write(stream, response, use_tuple);
            if (!write_error) co_await lingering_close(stream);
            break;
        }
        auto& request = parser.get();
        // HEAD is GET without the body, Content-Length kept: a body here would be
        // read as the start of the next response on a kept-alive connection.
        const bool head = request.method() == http::verb::head;
        if (head) request.method(http::verb::get);
        auto response = co_await route(ctx, request);
        response.keep_alive(request.keep_alive());
        response.prepare_payload();
        if (head) {
            const auto length = response.body().size();
            response.body().clear();
            response.content_length(length);
        }
        stream.expires_after(request_deadline);
        if (handed_over_) response.keep_alive(false);
        auto [write_error, written] = co_await http::async_write(stream, response, use_tuple);
        if (write_error || !response.keep_alive()) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace halfpipe
