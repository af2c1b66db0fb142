#include "server/admin/admin_server.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>

#include "common/log.hpp"
#include "server/admin/admin_routes.hpp"
#include "server/socket_options.hpp"

namespace halfpipe {

namespace beast = boost::beast;

namespace {

using namespace std::chrono_literals;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
constexpr auto request_deadline = 10s;  // a slow client cannot hold a connection open
constexpr std::size_t header_limit = 8 * 1024;
constexpr std::size_t body_limit = 64 * 1024;
constexpr std::size_t max_connections = 64;
constexpr int admin_nice = 10;

}  // namespace

admin_server::admin_server(admin_options options, admin_backend& backend, std::shared_ptr<prometheus::Registry> registry)
    : options_(std::move(options)), backend_(backend), registry_(std::move(registry)) {}

admin_server::~admin_server() { stop(); }

void admin_server::start() {
    tcp::endpoint endpoint(net::ip::make_address(options_.address.host), options_.address.port);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    // In a handover the successor binds this port while this process drains, as it
    // does the listeners; until this one exits the kernel spreads scrapes over both.
    set_reuse_port(acceptor_);
    acceptor_.bind(endpoint);
    acceptor_.listen();
    auto bound = bound_ = acceptor_.local_endpoint();
    auto host = bound.address().to_string();
    log::get().info("event=admin_listening address={}:{}", bound.address().is_v6() ? "[" + host + "]" : host,
                    bound.port());
    net::co_spawn(context_, accept_loop(), [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
    });
    thread_ = std::thread([this] {
        // A scrape walks every TCP socket of the host through sock_diag: where the
        // cores are busy, the relay's threads must come first. Linux takes a nice
        // value per thread; failing to set it only costs that preference.
        ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), admin_nice);
        context_.run();
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
        if (!acceptor_.is_open()) co_return;
        if (ec) {
            backoff.expires_after(100ms);  // descriptor exhaustion: never spin
            co_await backoff.async_wait(use_tuple);
            continue;
        }
        if (connections_ >= max_connections) {
            boost::system::error_code ignored;
            socket.close(ignored);
            continue;
        }
        net::co_spawn(context_, serve(std::move(socket)), [](std::exception_ptr e) {
            if (e) log::get().error("event=admin_error error=bug_in_request_handling");
        });
    }
}

net::awaitable<void> admin_server::serve(tcp::socket socket) {
    ++connections_;
    struct count_guard {
        std::size_t& n;
        ~count_guard() { --n; }
    } guard{connections_};

    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    admin_context ctx{options_, backend_, registry_};
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(header_limit);
        parser.body_limit(body_limit);
        stream.expires_after(request_deadline);
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
            co_await http::async_write(stream, response, use_tuple);
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
        auto [write_error, written] = co_await http::async_write(stream, response, use_tuple);
        if (write_error || !response.keep_alive()) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace halfpipe
