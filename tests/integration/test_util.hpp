#pragma once
// Shared helpers for the integration tests (on top of harness/).
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <future>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "harness/halfpipe.hpp"
#include "harness/process.hpp"
#include "harness/sockets.hpp"
#include "harness/upstream.hpp"

namespace it {

// Slack around timer expectations: a 1 s timeout must fire after at least
// (1 s - kEarly) and within (1 s + kLate). The machine is shared, so be generous.
inline constexpr auto kEarly = 150ms;
inline constexpr auto kLate = 700ms;

inline double seconds(clock::duration d) { return std::chrono::duration<double>(d).count(); }
inline long long ms(clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

// A client connected through halfpipe and the upstream side of the same connection.
struct relay_pair {
    socket_fd client;
    socket_fd up;
    clock::time_point connected;
    std::uint16_t client_port = 0;  // the client's local port, as the access log shows it
};

// Connects a client and takes the matching upstream connection (queue-mode upstream).
inline ::testing::AssertionResult connect_pair(halfpipe& proxy, upstream& server, relay_pair& out,
                                               clock::duration timeout = 3s) {
    int err = 0;
    out.client = proxy.connect(timeout, &err);
    if (!out.client) return ::testing::AssertionFailure() << "connect to halfpipe failed: " << std::strerror(err);
    out.connected = clock::now();
    out.client_port = local_port(out.client.get());
    out.up = server.accept(timeout);
    if (!out.up) return ::testing::AssertionFailure() << "halfpipe did not connect to the upstream within timeout";
    return ::testing::AssertionSuccess();
}

// Sends `a` client→upstream, then `b` upstream→client, and checks both arrive
// intact. The writer runs beside the reader, so any size works.
inline ::testing::AssertionResult one_way(int from, int to, const std::string& data, clock::duration timeout,
                                          const char* direction) {
    if (data.empty()) return ::testing::AssertionSuccess();
    auto writer = std::async(std::launch::async, [&] { return write_all_ok(from, data, timeout); });
    auto r = read_exact(to, data.size(), clock::now() + timeout);
    const bool wrote = writer.get();
    if (!wrote) return ::testing::AssertionFailure() << direction << ": write failed";
    if (r.end != read_end::data || r.data != data)
        return ::testing::AssertionFailure() << direction << ": read ended with " << to_string(r.end) << " after "
                                             << r.data.size() << " of " << data.size() << " bytes"
                                             << (r.data == data.substr(0, r.data.size()) ? "" : " (and they differ)");
    return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult round_trip(int client, int up, const std::string& a, const std::string& b,
                                             clock::duration timeout = 3s) {
    auto first = one_way(client, up, a, timeout, "client→upstream");
    if (!first) return first;
    return one_way(up, client, b, timeout, "upstream→client");
}

// What a reset looks like from a socket error: ECONNRESET, or EPIPE when the RST hit a
// socket that had already received a FIN (Linux reports that state's reset as EPIPE).
inline bool is_reset_error(int err) { return err == ECONNRESET || err == EPIPE; }
inline std::string error_name(int err) {
    if (err == 0) return "none (timeout)";
    if (err == -1) return "closed without error";
    if (err < 0) return "hang-up without error";
    return std::strerror(err);
}

namespace fs = std::filesystem;

// A private temporary directory, removed at the end of the test.
class temp_dir {
public:
    temp_dir() {
        std::string tmpl = (fs::temp_directory_path() / "halfpipe-it-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    fs::path write(const std::string& name, const std::string& text) const {
        const fs::path p = path_ / name;
        std::ofstream(p) << text;
        return p;
    }

private:
    fs::path path_;
};

// The upstream's address under the name that slow_resolve_shim.cpp makes take 1 s
// to resolve (tests that preload SLOW_RESOLVE_SHIM into halfpipe).
inline std::string slow_name_for(const upstream& server) {
    const std::string address = server.address();
    return "slow.halfpipe.test:" + address.substr(address.rfind(':') + 1);
}

// For EXPECT_* messages: the proxy's captured log.
inline std::string log_of(const halfpipe& proxy) { return "\n--- halfpipe output ---\n" + proxy.log(); }

// The time between two points must lie in [lo, hi].
#define EXPECT_ELAPSED_BETWEEN(from, to, lo, hi)                                                          \
    do {                                                                                                  \
        const auto elapsed_ = (to) - (from);                                                              \
        EXPECT_GE(elapsed_, (lo)) << "elapsed " << ::it::ms(elapsed_) << " ms, expected >= " << ::it::ms(lo) \
                                  << " ms";                                                               \
        EXPECT_LE(elapsed_, (hi)) << "elapsed " << ::it::ms(elapsed_) << " ms, expected <= " << ::it::ms(hi) \
                                  << " ms";                                                               \
    } while (0)

}  // namespace it
