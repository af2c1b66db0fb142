// default_config and quick_config: the configs that come from no file.
#include <gtest/gtest.h>

#include "config/config.hpp"

namespace halfpipe::config {
namespace {

std::string quick_error(const std::string& listen, const std::string& upstream) {
    try {
        quick_config(listen, upstream);
    } catch (const config_error& e) {
        return e.what();
    }
    ADD_FAILURE() << "no config_error for --listen " << listen << " --upstream " << upstream;
    return {};
}

listener_config expected_listener(host_port bind, host_port upstream) {
    listener_config listener;
    listener.name = "default";
    listener.bind = {std::move(bind)};
    listener.upstream.address = std::move(upstream);
    return listener;
}

TEST(default_config, one_listener_from_8080_to_9000) {
    const auto c = default_config();
    EXPECT_GE(c.workers, 1u);
    EXPECT_EQ(c.drain_timeout, 30s);
    EXPECT_TRUE(c.access_log);
    EXPECT_EQ(c.admin, (host_port{"127.0.0.1", 9901}));
    ASSERT_EQ(c.listeners.size(), 1u);
    EXPECT_EQ(c.listeners[0], expected_listener({"127.0.0.1", 8080}, {"127.0.0.1", 9000}));
}

TEST(default_config, equals_the_same_config_written_in_yaml) {
    EXPECT_EQ(default_config(), load_string(R"(
listeners:
  - name: default
    bind: 127.0.0.1:8080
    upstream: {address: 127.0.0.1:9000}
)"));
}

TEST(quick_config, listen_and_upstream) {
    const auto c = quick_config("0.0.0.0:5432", "db.internal:5432");
    EXPECT_GE(c.workers, 1u);
    EXPECT_EQ(c.admin, (host_port{"127.0.0.1", 9901}));
    ASSERT_EQ(c.listeners.size(), 1u);
    EXPECT_EQ(c.listeners[0], expected_listener({"0.0.0.0", 5432}, {"db.internal", 5432}));
}

TEST(quick_config, ipv6_and_port_zero) {
    const auto c = quick_config("[::1]:0", "[::1]:9000");
    EXPECT_EQ(c.listeners.at(0).bind.at(0), (host_port{"::1", 0}));
    EXPECT_EQ(c.listeners.at(0).upstream.address, (host_port{"::1", 9000}));
}

TEST(quick_config, errors_name_the_option) {
    EXPECT_EQ(quick_error("localhost:8080", "h:1"),
              "--listen: invalid address \"localhost:8080\": \"localhost\" is not an IP address "
              "(host names are not allowed here)");
    EXPECT_EQ(quick_error("8080", "h:1").rfind("--listen: invalid address \"8080\": missing port", 0), 0u);
    EXPECT_EQ(
        quick_error("127.0.0.1:8080", "backend").rfind("--upstream: invalid address \"backend\": missing port", 0), 0u);
    EXPECT_EQ(quick_error("127.0.0.1:8080", "backend:0"),
              "--upstream: port 0 is not allowed for an upstream (expected 1..65535)");
    EXPECT_EQ(quick_error("127.0.0.1:8080", "::1:80").rfind("--upstream: ", 0), 0u);
}

TEST(quick_config, listen_on_the_admin_address_is_refused) {
    EXPECT_EQ(quick_error("127.0.0.1:9901", "h:1"), "--listen: 127.0.0.1:9901 is already the admin address");
    EXPECT_NO_THROW(quick_config("[::ffff:7f00:1]:9901", "h:1"));  // another socket family
    EXPECT_NO_THROW(quick_config("127.0.0.2:9901", "h:1"));
    EXPECT_NO_THROW(quick_config("0.0.0.0:9901", "h:1"));
}

}  // namespace
}  // namespace halfpipe::config
