// Command line: --help, --version, --config FILE --check, and starting from a config file.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include "test_util.hpp"

namespace it {
namespace {

std::string valid_config(const std::string& upstream_address, const std::string& idle = "30s") {
    return "# integration test config\n"
           "workers: 1\n"
           "drain_timeout: 2s\n"
           "admin: off\n"
           "listeners:\n"
           "  - name: itest\n"
           "    bind: 127.0.0.1:0\n"
           "    upstream:\n"
           "      address: " +
           upstream_address +
           "\n"
           "    timeouts:\n"
           "      connect: 1s\n"
           "      idle: " +
           idle + "\n";
}

TEST(Cli, HelpExitsZeroAndDescribesOptions) {
    auto r = run_to_exit(halfpipe_binary(), {"--help"}, 5s);
    ASSERT_TRUE(r.exit_code.has_value()) << "--help did not exit within 5 s";
    EXPECT_EQ(*r.exit_code, 0) << r.output;
    for (const char* flag : {"--listen", "--upstream", "--config", "--check"}) {
        EXPECT_NE(r.output.find(flag), std::string::npos) << "--help does not mention " << flag << ":\n" << r.output;
    }
}

TEST(Cli, VersionExitsZeroAndPrintsVersion) {
    auto r = run_to_exit(halfpipe_binary(), {"--version"}, 5s);
    ASSERT_TRUE(r.exit_code.has_value()) << "--version did not exit within 5 s";
    EXPECT_EQ(*r.exit_code, 0) << r.output;
#ifdef HALFPIPE_VERSION
    EXPECT_NE(r.output.find(HALFPIPE_VERSION), std::string::npos) << "expected version " << HALFPIPE_VERSION << " in:\n"
                                                                   << r.output;
#endif
}

TEST(Cli, CheckAcceptsValidConfig) {
    temp_dir dir;
    const auto file = dir.write("good.yaml", valid_config("127.0.0.1:9"));
    auto r = run_to_exit(halfpipe_binary(), {"--config", file.string(), "--check"}, 5s);
    ASSERT_TRUE(r.exit_code.has_value()) << "--check did not exit within 5 s (did it start serving?)";
    EXPECT_EQ(*r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.find("event=listening"), std::string::npos) << "--check must not start listeners:\n" << r.output;
}

TEST(Cli, CheckAcceptsTheShippedExample) {
    const fs::path example = fs::path(HALFPIPE_SOURCE_DIR) / "config" / "halfpipe.example.yaml";
    if (!fs::exists(example)) GTEST_SKIP() << example << " does not exist";
    auto r = run_to_exit(halfpipe_binary(), {"--config", example.string(), "--check"}, 5s);
    ASSERT_TRUE(r.exit_code.has_value());
    EXPECT_EQ(*r.exit_code, 0) << r.output;
}

TEST(Cli, CheckRejectsInvalidValueNamingKeyAndLine) {
    temp_dir dir;
    // Line 12 holds the bad duration.
    const auto file = dir.write("bad.yaml", valid_config("127.0.0.1:9", "5x"));
    {
        std::ifstream in(file);
        std::string line;
        for (int i = 1; std::getline(in, line); ++i) {
            if (line.find("5x") != std::string::npos) {
                ASSERT_EQ(i, 12) << "test config layout changed";
            }
        }
    }
    auto r = run_to_exit(halfpipe_binary(), {"--config", file.string(), "--check"}, 5s);
    ASSERT_TRUE(r.exit_code.has_value()) << "--check did not exit within 5 s";
    EXPECT_EQ(*r.exit_code, 1) << r.output;
    EXPECT_NE(r.err.find("timeouts.idle"), std::string::npos) << "stderr should name the key:\n" << r.output;
    EXPECT_TRUE(std::regex_search(r.err, std::regex(R"(\b12\b)"))) << "stderr should name line 12:\n" << r.output;
}

TEST(Cli, CheckRejectsUnknownKeyNamingKeyAndLine) {
    temp_dir dir;
    const auto file = dir.write("unknown.yaml", valid_config("127.0.0.1:9") + "    idle_timeout: 5s\n");
    auto r = run_to_exit(halfpipe_binary(), {"--config", file.string(), "--check"}, 5s);
    ASSERT_TRUE(r.exit_code.has_value()) << "--check did not exit within 5 s";
    EXPECT_EQ(*r.exit_code, 1) << r.output;
    EXPECT_NE(r.err.find("idle_timeout"), std::string::npos) << "stderr should name the key:\n" << r.output;
    EXPECT_TRUE(std::regex_search(r.err, std::regex(R"(\b13\b)"))) << "stderr should name line 13:\n" << r.output;
}

TEST(Cli, RunsFromConfigFileAndRelays) {
    upstream server("127.0.0.1", upstream::echo());
    temp_dir dir;
    const auto file = dir.write("run.yaml", valid_config(server.address()));
    halfpipe proxy({"--config", file.string()}, {});
    auto listening = proxy.wait_for_line(R"(event=listening\b.*\blistener=itest\b.*\baddress=127\.0\.0\.1:(\d+))", 10s);
    ASSERT_TRUE(listening) << log_of(proxy);
    const auto port = static_cast<std::uint16_t>(std::stoul(listening->groups.at(1)));
    int err = 0;
    socket_fd client = connect_tcp("127.0.0.1", port, 2s, &err);
    ASSERT_TRUE(client) << std::strerror(err);
    const std::string msg = random_bytes(10000, 7);
    ASSERT_TRUE(write_all_ok(client.get(), msg));
    auto r = read_exact(client.get(), msg.size(), clock::now() + 3s);
    EXPECT_EQ(r.end, read_end::data) << to_string(r.end) << log_of(proxy);
    EXPECT_TRUE(r.data == msg);
    client.reset();
    proxy.proc().send_signal(SIGTERM);
    auto status = proxy.proc().wait_exit(5s);
    ASSERT_TRUE(status) << "no exit within 5 s of SIGTERM" << log_of(proxy);
}

TEST(Cli, EveryBindAddressIsLoggedAndRelays) {
    if (!ipv6_loopback_available()) GTEST_SKIP() << "no IPv6 loopback here";
    upstream server("127.0.0.1", upstream::echo());
    temp_dir dir;
    std::string text = valid_config(server.address());
    const std::string bind_line = "    bind: 127.0.0.1:0\n";
    text.replace(text.find(bind_line), bind_line.size(), "    bind: [127.0.0.1:0, \"[::1]:0\"]\n");
    const auto file = dir.write("two.yaml", text);
    halfpipe proxy({"--config", file.string()}, {});
    auto v4 = proxy.wait_for_line(R"(event=listening\b.*\blistener=itest\b.*\baddress=127\.0\.0\.1:(\d+))", 10s);
    auto v6 = proxy.wait_for_line(R"(event=listening\b.*\blistener=itest\b.*\baddress=\[::1\]:(\d+))", 10s);
    ASSERT_TRUE(v4 && v6) << "expected one event=listening line per bind address" << log_of(proxy);
    for (auto [host, port] : {std::pair{std::string("127.0.0.1"), v4->groups.at(1)}, std::pair{std::string("::1"), v6->groups.at(1)}}) {
        socket_fd client = connect_tcp(host, static_cast<std::uint16_t>(std::stoul(port)), 2s);
        ASSERT_TRUE(client) << host << log_of(proxy);
        ASSERT_TRUE(write_all_ok(client.get(), "hello " + host));
        auto r = read_exact(client.get(), 6 + host.size(), clock::now() + 3s);
        EXPECT_EQ(r.data, "hello " + host) << to_string(r.end) << log_of(proxy);
    }
}

TEST(Cli, ResolveTimeoutIsNamedAtStart) {
    upstream server;
    for (const auto& [flag, logged] : std::vector<std::pair<std::vector<std::string>, std::string>>{
             {{}, "5000ms"}, {{"--resolve-timeout", "1s500ms"}, "1500ms"}, {{"--resolve-timeout", "off"}, "off"}}) {
        halfpipe proxy({.upstream = server.address(), .extra = flag});
        EXPECT_TRUE(proxy.wait_for_line("event=starting .* resolve_timeout=" + logged + " ", 1s)) << log_of(proxy);
    }
    auto r = run_to_exit(halfpipe_binary(),
                         {"--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9", "--resolve-timeout", "2"}, 5s);
    ASSERT_TRUE(r.exit_code.has_value());
    EXPECT_NE(*r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("--resolve-timeout"), std::string::npos) << r.output;
}

TEST(Cli, UnknownFlagFails) {
    auto r = run_to_exit(halfpipe_binary(), {"--no-such-flag"}, 5s);
    ASSERT_TRUE(r.exit_code.has_value());
    EXPECT_NE(*r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace it
