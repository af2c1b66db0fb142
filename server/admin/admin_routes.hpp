#pragma once
// Request routing of the admin endpoint, apart from the connection handling.
#include <boost/beast/http.hpp>

#include <memory>

#include "common/net.hpp"
#include "server/admin/admin_backend.hpp"
#include "server/admin/admin_server.hpp"

namespace halfpipe {

namespace http = boost::beast::http;
using admin_request = http::request<http::string_body>;
using admin_response = http::response<http::string_body>;

struct admin_context {
    const admin_options& options;
    admin_backend& backend;
    std::shared_ptr<prometheus::Registry> registry;
};

net::awaitable<admin_response> route(const admin_context& ctx, const admin_request& request);
admin_response plain_response(http::status status, unsigned version, std::string body);

}  // namespace halfpipe
