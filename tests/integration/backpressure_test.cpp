// Contract 6: a client that stops reading stops the upstream (its writes block)
// instead of making halfpipe buffer without bound.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>

#include "test_util.hpp"

namespace it {
namespace {

// A stream whose byte at offset i is pattern[i % size]; the odd size makes a lost or
// repeated chunk show up as a mismatch.
const std::string& pattern() {
    static const std::string p = random_bytes(65521, 31);
    return p;
}

// Writes the pattern stream as fast as the socket takes it until `limit` bytes or stop.
void push(int fd, std::size_t limit, std::atomic<std::size_t>& written, const std::atomic<bool>& stop) {
    const std::string& p = pattern();
    while (!stop.load() && written.load() < limit) {
        const std::size_t off = written.load() % p.size();
        const std::size_t len = std::min(p.size() - off, limit - written.load());
        const ssize_t n = ::send(fd, p.data() + off, len, MSG_NOSIGNAL);
        if (n > 0) {
            written.fetch_add(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) return;
        pollfd pfd{fd, POLLOUT, 0};
        ::poll(&pfd, 1, 20);
    }
}

TEST(Backpressure, StalledClientBlocksUpstreamAndBoundsMemory) {
    upstream server;
    halfpipe proxy({.upstream = server.address()});
    relay_pair p;
    ASSERT_TRUE(connect_pair(proxy, server, p)) << log_of(proxy);

    // Warm up: 4 MiB through the relay so one-time allocations are in the baseline.
    const std::string warm = random_bytes(4 * 1024 * 1024, 32);
    ASSERT_TRUE(round_trip(p.client.get(), p.up.get(), warm, warm, 10s)) << log_of(proxy);
    const auto rss0 = vm_rss_kib(proxy.pid());
    ASSERT_TRUE(rss0);

    constexpr std::size_t kTarget = 300ull * 1024 * 1024;
    std::atomic<std::size_t> written{0};
    std::atomic<bool> stop{false};
    std::thread pusher([&] { push(p.up.get(), kTarget, written, stop); });

    // The client reads nothing for 4 s. Sample halfpipe's memory meanwhile.
    std::size_t rss_max = *rss0;
    std::size_t written_at_3s = 0;
    const auto t0 = clock::now();
    while (clock::now() - t0 < 4s) {
        if (auto rss = vm_rss_kib(proxy.pid())) rss_max = std::max(rss_max, *rss);
        if (written_at_3s == 0 && clock::now() - t0 >= 3s) written_at_3s = written.load();
        std::this_thread::sleep_for(50ms);
    }
    const std::size_t written_at_4s = written.load();
    stop.store(true);
    pusher.join();

    EXPECT_LT(written_at_4s, kTarget) << "the upstream could send everything: nothing pushed back";
    EXPECT_LT(written_at_4s, 150ull * 1024 * 1024) << "far more than the kernel buffers can hold went somewhere";
    EXPECT_LT(written_at_4s - written_at_3s, 1024u * 1024) << "the upstream was still sending after 3 s: "
                                                          << written_at_3s << " → " << written_at_4s;
    EXPECT_LE(rss_max - *rss0, 8u * 1024) << "halfpipe VmRSS grew from " << *rss0 << " KiB to " << rss_max
                                          << " KiB while the client did not read";

    // Nothing was lost: the client now reads every byte the upstream managed to send.
    std::size_t checked = 0;
    bool intact = true;
    const auto deadline = clock::now() + 20s;
    while (checked < written_at_4s && clock::now() < deadline) {
        auto r = read_some(p.client.get(), deadline, std::min<std::size_t>(written_at_4s - checked, 1 << 20));
        for (std::size_t i = 0; i < r.data.size() && intact; ++i) {
            if (r.data[i] != pattern()[(checked + i) % pattern().size()]) {
                intact = false;
                ADD_FAILURE() << "stream differs at offset " << checked + i;
            }
        }
        checked += r.data.size();
        if (r.end != read_end::data) break;
    }
    EXPECT_EQ(checked, written_at_4s) << "client got only part of what the upstream sent" << log_of(proxy);
    EXPECT_TRUE(intact);
    abort_close(p.client);
    abort_close(p.up);
}

}  // namespace
}  // namespace it
