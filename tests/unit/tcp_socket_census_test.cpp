// Real sockets on loopback, counted by take_census() and cross-checked against `ss`.
// Ports are picked by the kernel (port 0), but a fresh port may still have sockets from
// earlier users: TIME_WAIT sockets toward an old listener on that port, or with that local
// port on another address. Such ports are skipped (see listen_on), and nobody else can
// create sockets on a port we listen on, so the counts are exact even when other tests
// share the network namespace.
#include "server/kernel/tcp_socket_census.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace halfpipe::kernel {
// Readable GoogleTest failure messages.
void PrintTo(side s, std::ostream* out) { *out << side_name(s); }
void PrintTo(tcp_state s, std::ostream* out) { *out << state_name(s); }
}  // namespace halfpipe::kernel

namespace {

using namespace halfpipe::kernel;
using namespace std::chrono_literals;

class fd {
public:
    fd() = default;
    explicit fd(int value) : value_(value) {}
    fd(fd&& other) noexcept : value_(std::exchange(other.value_, -1)) {}
    fd& operator=(fd&& other) noexcept {
        if (this != &other) {
            reset();
            value_ = std::exchange(other.value_, -1);
        }
        return *this;
    }
    ~fd() { reset(); }
    int get() const { return value_; }
    void reset() {
        if (value_ >= 0) ::close(value_);
        value_ = -1;
    }

private:
    int value_ = -1;
};

struct socket_address {
    sockaddr_storage storage{};
    socklen_t length = 0;
    int family = AF_UNSPEC;
};

socket_address make_address(const std::string& ip, std::uint16_t port) {
    socket_address a;
    if (ip.find(':') != std::string::npos) {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        if (::inet_pton(AF_INET6, ip.c_str(), &sin6->sin6_addr) != 1) throw std::invalid_argument(ip);
        a.length = sizeof(sockaddr_in6);
        a.family = AF_INET6;
    } else {
        auto* sin = reinterpret_cast<sockaddr_in*>(&a.storage);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        if (::inet_pton(AF_INET, ip.c_str(), &sin->sin_addr) != 1) throw std::invalid_argument(ip);
        a.length = sizeof(sockaddr_in);
        a.family = AF_INET;
    }
    return a;
}

std::uint16_t local_port(int s) {
    sockaddr_storage storage{};
    socklen_t length = sizeof storage;
    if (::getsockname(s, reinterpret_cast<sockaddr*>(&storage), &length) != 0) return 0;
    return storage.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port)
                                         : ntohs(reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
}

struct listening {
    fd socket;
    std::uint16_t port = 0;
    std::string ip;
};

bool quiet_port(std::uint16_t port);

// Returns an invalid socket (port 0) when the address cannot be bound here.
listening listen_once(const std::string& ip, int backlog, int receive_buffer) {
    listening l;
    l.ip = ip;
    const socket_address a = make_address(ip, 0);
    l.socket = fd(::socket(a.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (l.socket.get() < 0) return {};
    if (a.family == AF_INET6) {
        const int v6only = 0;  // "::" also accepts IPv4 clients, as IPv4-mapped addresses
        ::setsockopt(l.socket.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (receive_buffer > 0) {
        ::setsockopt(l.socket.get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    if (::bind(l.socket.get(), reinterpret_cast<const sockaddr*>(&a.storage), a.length) != 0 ||
        ::listen(l.socket.get(), backlog) != 0) {
        return {};
    }
    l.port = local_port(l.socket.get());
    return l;
}

// A listener on a port that no other socket uses, whatever its address (ss's view).
listening listen_on(const std::string& ip, int backlog = 512, int receive_buffer = 0) {
    std::vector<listening> busy;  // held until the end so the kernel does not offer them again
    for (int attempt = 0; attempt < 50; ++attempt) {
        listening l = listen_once(ip, backlog, receive_buffer);
        if (l.port == 0 || quiet_port(l.port)) return l;
        busy.push_back(std::move(l));
    }
    return {};
}

fd connect_to(const std::string& ip, std::uint16_t port, int send_buffer = 0, bool blocking = true) {
    const socket_address a = make_address(ip, port);
    fd s(::socket(a.family, SOCK_STREAM | SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK), 0));
    if (s.get() < 0) throw std::runtime_error("socket failed");
    if (send_buffer > 0) ::setsockopt(s.get(), SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer);
    if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&a.storage), a.length) != 0 &&
        errno != EINPROGRESS) {
        throw std::runtime_error("connect failed: " + std::to_string(errno));
    }
    return s;
}

fd accept_one(const listening& l) {
    pollfd p{l.socket.get(), POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1) throw std::runtime_error("nothing to accept");
    fd s(::accept4(l.socket.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (s.get() < 0) throw std::runtime_error("accept failed");
    return s;
}

struct connection {
    fd client;  // the "upstream"-like side: its remote is the listener's address:port
    fd server;  // the accepted, "downstream" side
};

std::vector<connection> connect_many(const listening& l, std::size_t n, const std::string& ip = {}) {
    std::vector<connection> out;
    for (std::size_t i = 0; i < n; ++i) {
        connection c;
        c.client = connect_to(ip.empty() ? l.ip : ip, l.port);
        c.server = accept_one(l);
        out.push_back(std::move(c));
    }
    return out;
}

// Waits for the peer's FIN (read returns 0).
bool await_eof(const fd& s) {
    pollfd p{s.get(), POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1) return false;
    char byte;
    return ::read(s.get(), &byte, 1) == 0;
}

// The first side to close ends up in TIME_WAIT, the other one disappears after LAST_ACK.
void close_first(fd& first, fd& second) {
    first.reset();
    ASSERT_TRUE(await_eof(second));
    second.reset();
}

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (condition()) return true;
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(2ms);
    }
}

using side_state = std::pair<side, tcp_state>;
using tally = std::map<side_state, std::uint64_t>;

tally census_of(const census_result& r, const std::string& listener) {
    tally t;
    for (const auto& [key, n] : r.counts) {
        if (std::get<0>(key) == listener) t[{std::get<1>(key), std::get<2>(key)}] = n;
    }
    return t;
}

std::string describe(const tally& t) {
    std::ostringstream out;
    for (const auto& [key, n] : t) out << side_name(key.first) << '/' << state_name(key.second) << '=' << n << ' ';
    return out.str();
}

// ---- ss ---------------------------------------------------------------------------------

std::string run(const std::string& command) {
    std::string output;
    FILE* pipe = ::popen(command.c_str(), "r");
    if (!pipe) return output;
    char chunk[4096];
    std::size_t n;
    while ((n = std::fread(chunk, 1, sizeof chunk, pipe)) > 0) output.append(chunk, n);
    ::pclose(pipe);
    return output;
}

bool have_ss() {
    static const bool present = run("command -v ss 2>/dev/null").find("ss") != std::string::npos;
    return present;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (!line.empty()) lines.push_back(line);
    }
    return lines;
}

// `ss -Htan state <state> '( sport = :P or dport = :P )'`, counted.
std::size_t ss_count(const std::string& state, std::uint16_t port) {
    const std::string p = std::to_string(port);
    return lines_of(run("ss -Htan state " + state + " '( sport = :" + p + " or dport = :" + p + " )' 2>/dev/null"))
        .size();
}

tcp_state from_ss(const std::string& name) {
    static const std::map<std::string, tcp_state> names{
        {"ESTAB", tcp_state::established},      {"SYN-SENT", tcp_state::syn_sent},
        {"SYN-RECV", tcp_state::syn_recv},      {"FIN-WAIT-1", tcp_state::fin_wait1},
        {"FIN-WAIT-2", tcp_state::fin_wait2},   {"TIME-WAIT", tcp_state::time_wait},
        {"UNCONN", tcp_state::close},           {"CLOSE-WAIT", tcp_state::close_wait},
        {"LAST-ACK", tcp_state::last_ack},      {"LISTEN", tcp_state::listen},
        {"CLOSING", tcp_state::closing},
    };
    auto it = names.find(name);
    if (it == names.end()) throw std::runtime_error("unknown ss state " + name);
    return it->second;
}

std::uint16_t port_of(const std::string& address_port) {
    return static_cast<std::uint16_t>(std::stoi(address_port.substr(address_port.rfind(':') + 1)));
}

std::string ports_filter(std::uint16_t port) {
    const std::string p = std::to_string(port);
    return "( sport = :" + p + " or dport = :" + p + " )";
}

// Every non-listening socket ss selects with `filter`, by side: local port == port is the
// downstream side, anything else (remote port == port) the upstream side.
tally ss_tally(std::uint16_t port, const std::string& filter) {
    tally t;
    for (const auto& line : lines_of(run("ss -Htan '" + filter + "' 2>/dev/null"))) {
        std::istringstream fields(line);
        std::string state, recv_q, send_q, local, peer;
        fields >> state >> recv_q >> send_q >> local >> peer;
        const tcp_state s = from_ss(state);
        if (s == tcp_state::listen) continue;
        ++t[{port_of(local) == port ? side::downstream : side::upstream, s}];
    }
    return t;
}

// No socket but our listener has `port` as its local or remote port.
bool quiet_port(std::uint16_t port) {
    if (have_ss()) return ss_tally(port, ports_filter(port)).empty();
    census_query q;
    q.listeners.push_back({"quiet", endpoint::parse("::", port)});  // any local address
    for (const char* ip : {"127.0.0.1", "127.0.0.2", "::1"}) q.upstreams.push_back({"quiet", endpoint::parse(ip, port)});
    return take_census(q).sockets_examined == 0;
}

census_query loopback_query(const std::string& name, const listening& l) {
    census_query q;
    q.listeners.push_back({name, endpoint::parse(l.ip, l.port)});
    q.upstreams.push_back({name, endpoint::parse(l.ip, l.port)});
    return q;
}

// Waits until the census shows `expected` for listener `name`, then checks that ss, given
// `filter` (default: local or remote port == port), agrees.
void expect_census(const census_query& query, const std::string& name, std::uint16_t port, const tally& expected,
                   std::string filter = {}) {
    if (filter.empty()) filter = ports_filter(port);
    tally seen;
    const bool reached = eventually([&] {
        seen = census_of(take_census(query), name);
        return seen == expected;
    });
    EXPECT_TRUE(reached) << "census: " << describe(seen) << "\nexpected: " << describe(expected);
    if (!have_ss()) return;
    EXPECT_EQ(ss_tally(port, filter), expected) << "ss: " << describe(ss_tally(port, filter));
    EXPECT_EQ(census_of(take_census(query), name), ss_tally(port, filter));
}

// ---- endpoints, names, parsing ----------------------------------------------------------

TEST(TcpSocketCensus, StateAndSideNames) {
    EXPECT_EQ(state_name(tcp_state::established), "ESTABLISHED");
    EXPECT_EQ(state_name(tcp_state::syn_sent), "SYN_SENT");
    EXPECT_EQ(state_name(tcp_state::syn_recv), "SYN_RECV");
    EXPECT_EQ(state_name(tcp_state::fin_wait1), "FIN_WAIT1");
    EXPECT_EQ(state_name(tcp_state::fin_wait2), "FIN_WAIT2");
    EXPECT_EQ(state_name(tcp_state::time_wait), "TIME_WAIT");
    EXPECT_EQ(state_name(tcp_state::close), "CLOSE");
    EXPECT_EQ(state_name(tcp_state::close_wait), "CLOSE_WAIT");
    EXPECT_EQ(state_name(tcp_state::last_ack), "LAST_ACK");
    EXPECT_EQ(state_name(tcp_state::listen), "LISTEN");
    EXPECT_EQ(state_name(tcp_state::closing), "CLOSING");
    EXPECT_EQ(state_name(static_cast<tcp_state>(12)), "UNKNOWN");
    // The kernel's numbering, as reported in idiag_state.
    EXPECT_EQ(static_cast<int>(tcp_state::time_wait), 6);
    EXPECT_EQ(static_cast<int>(tcp_state::listen), 10);
    EXPECT_EQ(static_cast<int>(tcp_state::closing), 11);
    EXPECT_EQ(side_name(side::downstream), "downstream");
    EXPECT_EQ(side_name(side::upstream), "upstream");
}

TEST(TcpSocketCensus, EndpointParsing) {
    const endpoint v4 = endpoint::parse("127.0.0.1", 8080);
    EXPECT_FALSE(v4.v6);
    EXPECT_EQ(v4.port, 8080);
    EXPECT_EQ(v4.addr[0], 127);
    EXPECT_EQ(v4.addr[3], 1);
    EXPECT_EQ(v4.addr[4], 0);
    EXPECT_EQ(v4.to_string(), "127.0.0.1:8080");

    const endpoint v6 = endpoint::parse("::1", 443);
    EXPECT_TRUE(v6.v6);
    EXPECT_EQ(v6.addr[15], 1);
    EXPECT_EQ(v6.to_string(), "[::1]:443");
    EXPECT_EQ(endpoint::parse("[::1]", 443), v6);
    EXPECT_EQ(endpoint::parse("2001:db8::5", 1).address_string(), "2001:db8::5");

    // IPv4-mapped addresses are plain IPv4.
    EXPECT_EQ(endpoint::parse("::ffff:10.1.2.3", 80), endpoint::parse("10.1.2.3", 80));
    EXPECT_EQ(endpoint::parse("::ffff:10.1.2.3", 80).to_string(), "10.1.2.3:80");
    const std::uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3};
    EXPECT_EQ(endpoint::from_raw(AF_INET6, mapped, 80), endpoint::parse("10.1.2.3", 80));

    EXPECT_TRUE(endpoint::parse("0.0.0.0", 1).is_unspecified());
    EXPECT_TRUE(endpoint::parse("::", 1).is_unspecified());
    EXPECT_TRUE(endpoint::parse("::", 1).v6);
    EXPECT_FALSE(endpoint::parse("::1", 1).is_unspecified());

    EXPECT_NE(endpoint::parse("127.0.0.1", 1), endpoint::parse("127.0.0.1", 2));
    EXPECT_NE(endpoint::parse("0.0.0.0", 1), endpoint::parse("::", 1));
    EXPECT_LT(endpoint::parse("10.0.0.1", 1), endpoint::parse("10.0.0.2", 1));

    EXPECT_THROW(endpoint::parse("localhost", 1), std::invalid_argument);
    EXPECT_THROW(endpoint::parse("", 1), std::invalid_argument);
    EXPECT_THROW(endpoint::parse("1.2.3", 1), std::invalid_argument);
    EXPECT_THROW(endpoint::parse("fe80::1%lo", 1), std::invalid_argument);
    EXPECT_THROW(endpoint::parse("[127.0.0.1", 1), std::invalid_argument);
}

TEST(TcpSocketCensus, PortRangeParsing) {
    EXPECT_EQ(parse_port_range("32768\t60999\n"), (port_range{32768, 60999}));
    EXPECT_EQ(parse_port_range("32768\t60999\n").size(), 28232u);
    EXPECT_EQ(parse_port_range("1024 65535").size(), 64512u);
    EXPECT_EQ(parse_port_range("5000 5000").size(), 1u);
    EXPECT_THROW(parse_port_range(""), std::invalid_argument);
    EXPECT_THROW(parse_port_range("32768"), std::invalid_argument);
    EXPECT_THROW(parse_port_range("61000 32768"), std::invalid_argument);
    EXPECT_THROW(parse_port_range("1024 70000"), std::invalid_argument);
    EXPECT_THROW(parse_port_range("1024 2048 4096"), std::invalid_argument);
    EXPECT_THROW(parse_port_range("a b"), std::invalid_argument);

    std::ifstream file("/proc/sys/net/ipv4/ip_local_port_range");
    const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    EXPECT_EQ(local_port_range(), parse_port_range(text));
}

TEST(TcpSocketCensus, EmptyQueryAndInvalidPorts) {
    const census_result r = take_census({});
    EXPECT_TRUE(r.counts.empty());
    EXPECT_TRUE(r.upstreams.empty());
    EXPECT_EQ(r.sockets_examined, 0u);

    census_query bad;
    bad.listeners.push_back({"L", endpoint::parse("127.0.0.1", 0)});
    EXPECT_THROW(take_census(bad), std::invalid_argument);
    census_query bad_upstream;
    bad_upstream.upstreams.push_back({"L", endpoint::parse("127.0.0.1", 0)});
    EXPECT_THROW(take_census(bad_upstream), std::invalid_argument);
}

// ---- real sockets -----------------------------------------------------------------------

// TIME_WAIT sockets the kernel can still create: past tcp_max_tw_buckets it closes
// connections without one ("time wait bucket table overflow"), so on a host already
// full of them (after a benchmark, say) the TIME_WAIT counts below cannot hold.
std::size_t time_wait_headroom() {
    std::size_t limit = 0, in_use = 0;
    std::ifstream("/proc/sys/net/ipv4/tcp_max_tw_buckets") >> limit;
    std::ifstream sockstat("/proc/net/sockstat");
    for (std::string word; sockstat >> word;) {
        if (word == "tw") {
            sockstat >> in_use;
            break;
        }
    }
    return limit > in_use ? limit - in_use : 0;
}

// Why a test that counts TIME_WAIT sockets cannot run here, if it cannot.
std::optional<std::string> too_little_time_wait_room() {
    const std::size_t room = time_wait_headroom();
    if (room >= 1000) return std::nullopt;
    return "the kernel has room for only " + std::to_string(room) + " more TIME_WAIT sockets (tcp_max_tw_buckets)";
}

// Produces every steady state both ways round and compares with ss.
void lifecycle_scenario(const std::string& ip) {
    if (const auto why = too_little_time_wait_room()) GTEST_SKIP() << *why;
    listening l = listen_on(ip);
    if (l.port == 0) GTEST_SKIP() << "cannot listen on " << ip;
    auto conns = connect_many(l, 12);

    for (std::size_t i = 0; i < 3; ++i) close_first(conns[i].client, conns[i].server);      // client TIME_WAIT
    for (std::size_t i = 3; i < 6; ++i) close_first(conns[i].server, conns[i].client);      // server TIME_WAIT
    for (std::size_t i = 6; i < 8; ++i) ASSERT_EQ(::shutdown(conns[i].client.get(), SHUT_WR), 0);
    for (std::size_t i = 8; i < 10; ++i) ASSERT_EQ(::shutdown(conns[i].server.get(), SHUT_WR), 0);
    // conns[10..11] stay established.

    const census_query q = loopback_query("L", l);
    expect_census(q, "L", l.port,
                  {
                      {{side::upstream, tcp_state::time_wait}, 3},
                      {{side::downstream, tcp_state::time_wait}, 3},
                      {{side::upstream, tcp_state::fin_wait2}, 2},
                      {{side::downstream, tcp_state::close_wait}, 2},
                      {{side::downstream, tcp_state::fin_wait2}, 2},
                      {{side::upstream, tcp_state::close_wait}, 2},
                      {{side::upstream, tcp_state::established}, 2},
                      {{side::downstream, tcp_state::established}, 2},
                  });

    const census_result r = take_census(q);
    EXPECT_TRUE(r.filtered_in_kernel);
    EXPECT_EQ(r.sockets_examined, 18u);  // the kernel returned our sockets only, LISTEN excluded
    EXPECT_EQ(r.count("L", side::downstream, tcp_state::listen), 0u);
    EXPECT_EQ(r.total("L", side::upstream), 9u);
    EXPECT_EQ(r.total("L", side::downstream), 9u);
    const endpoint upstream = endpoint::parse(ip, l.port);
    EXPECT_EQ(r.upstreams.at({"L", upstream}), (census_result::upstream_counts{3, 9}));
    EXPECT_EQ(r.sockets_toward.at(upstream), 9u);
    if (have_ss()) {
        EXPECT_EQ(ss_count("time-wait", l.port), 6u);
        EXPECT_EQ(ss_count("fin-wait-2", l.port), 4u);
        EXPECT_EQ(ss_count("close-wait", l.port), 4u);
        EXPECT_EQ(ss_count("established", l.port), 4u);
    }
}

TEST(TcpSocketCensus, LifecycleStatesIPv4) { lifecycle_scenario("127.0.0.1"); }

TEST(TcpSocketCensus, LifecycleStatesIPv6) { lifecycle_scenario("::1"); }

// A "::" listener accepts IPv4 clients as AF_INET6 sockets with IPv4-mapped addresses.
TEST(TcpSocketCensus, DualStackListenerAndMappedAddresses) {
    listening l = listen_on("::");
    if (l.port == 0) GTEST_SKIP() << "no IPv6";
    auto v4 = connect_many(l, 2, "127.0.0.1");
    auto v6 = connect_many(l, 1, "::1");

    census_query q;
    q.listeners.push_back({"D", endpoint::parse("::", l.port)});
    q.upstreams.push_back({"D", endpoint::parse("127.0.0.1", l.port)});
    q.upstreams.push_back({"D", endpoint::parse("::1", l.port)});
    // A v4-only view of the same port: 0.0.0.0 matches the mapped sockets but not the ::1 one.
    q.listeners.push_back({"V4", endpoint::parse("0.0.0.0", l.port)});
    // A mapped upstream is the same endpoint as the plain IPv4 one.
    q.upstreams.push_back({"V4", endpoint::parse("::ffff:127.0.0.1", l.port)});
    // An exact IPv6 listener address.
    q.listeners.push_back({"V6", endpoint::parse("::1", l.port)});

    const tally expected_d{{{side::downstream, tcp_state::established}, 3}, {{side::upstream, tcp_state::established}, 3}};
    expect_census(q, "D", l.port, expected_d);
    const census_result r = take_census(q);
    const tally expected_v4_with_mapped{{{side::downstream, tcp_state::established}, 2},
                                        {{side::upstream, tcp_state::established}, 2}};
    EXPECT_EQ(r.count("V4", side::downstream, tcp_state::established), 2u);
    EXPECT_EQ(r.count("V4", side::upstream, tcp_state::established), 2u);
    EXPECT_EQ(r.count("V6", side::downstream, tcp_state::established), 1u);
    EXPECT_EQ(r.total("V6", side::upstream), 0u);
    EXPECT_EQ(r.sockets_toward.at(endpoint::parse("127.0.0.1", l.port)), 2u);
    EXPECT_EQ(r.sockets_toward.at(endpoint::parse("::1", l.port)), 1u);
    EXPECT_EQ(r.sockets_examined, 6u);

    // Without ipv4_mapped, an IPv4-only query skips the AF_INET6 dump: the IPv4 clients
    // (AF_INET) are still found, the accepted sockets (AF_INET6, mapped) are not.
    census_query v4_only;
    v4_only.listeners.push_back({"V4", endpoint::parse("0.0.0.0", l.port)});
    v4_only.upstreams.push_back({"V4", endpoint::parse("127.0.0.1", l.port)});
    EXPECT_EQ(census_of(take_census(v4_only), "V4"), expected_v4_with_mapped);
    v4_only.ipv4_mapped = false;
    const tally expected_v4_without_mapped{{{side::upstream, tcp_state::established}, 2}};
    const census_result without = take_census(v4_only);
    EXPECT_EQ(census_of(without, "V4"), expected_v4_without_mapped);
    EXPECT_EQ(without.sockets_examined, 2u);
    // The same rule without the kernel filter.
    for (int i = 0; i < 4000; ++i) {
        v4_only.upstreams.push_back({"X", endpoint::parse("192.0.2.1", static_cast<std::uint16_t>(1000 + i))});
    }
    const census_result unfiltered = take_census(v4_only);
    EXPECT_FALSE(unfiltered.filtered_in_kernel);
    EXPECT_EQ(census_of(unfiltered, "V4"), expected_v4_without_mapped);
    // A "::" listener still sees mapped sockets, as the kernel's AF_UNSPEC condition does.
    census_query any;
    any.listeners.push_back({"D", endpoint::parse("::", l.port)});
    any.ipv4_mapped = false;
    EXPECT_EQ(take_census(any).count("D", side::downstream, tcp_state::established), 3u);
    for (int i = 0; i < 4000; ++i) {
        any.upstreams.push_back({"X", endpoint::parse("192.0.2.1", static_cast<std::uint16_t>(1000 + i))});
        any.upstreams.push_back({"Y", endpoint::parse("2001:db8::1", static_cast<std::uint16_t>(1000 + i))});
    }
    const census_result any_unfiltered = take_census(any);
    EXPECT_FALSE(any_unfiltered.filtered_in_kernel);
    EXPECT_EQ(any_unfiltered.count("D", side::downstream, tcp_state::established), 3u);
}

// The bytecode keeps other ports and other addresses with the same port in the kernel.
TEST(TcpSocketCensus, KernelFilterExcludesUnrelatedSockets) {
    listening a = listen_on("127.0.0.1");
    listening b = listen_on("127.0.0.1");
    ASSERT_NE(a.port, 0);
    ASSERT_NE(b.port, 0);
    auto ours = connect_many(a, 3);
    auto theirs = connect_many(b, 4);
    close_first(theirs[0].client, theirs[0].server);
    close_first(theirs[1].server, theirs[1].client);

    // Same port as `a`, other loopback address: must not match 127.0.0.1:port.
    listening c;
    c.ip = "127.0.0.2";
    std::vector<connection> same_port_other_address;
    {
        const socket_address addr = make_address("127.0.0.2", a.port);
        fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (::bind(s.get(), reinterpret_cast<const sockaddr*>(&addr.storage), addr.length) == 0 &&
            ::listen(s.get(), 16) == 0) {
            c.socket = std::move(s);
            c.port = a.port;
            same_port_other_address = connect_many(c, 2);
        }
    }

    const census_query q = loopback_query("A", a);
    const std::string p = std::to_string(a.port);
    expect_census(q, "A", a.port,
                  {{{side::downstream, tcp_state::established}, 3}, {{side::upstream, tcp_state::established}, 3}},
                  "( src 127.0.0.1:" + p + " or dst 127.0.0.1:" + p + " )");
    const census_result r = take_census(q);
    EXPECT_TRUE(r.filtered_in_kernel);
    EXPECT_EQ(r.sockets_examined, 6u) << "the kernel returned sockets the bytecode should have dropped";
    for (const auto& [key, n] : r.counts) EXPECT_EQ(std::get<0>(key), "A");
    if (!same_port_other_address.empty() && have_ss()) {
        // ss by port alone does see the 127.0.0.2 connections.
        EXPECT_EQ(ss_count("established", a.port), 6u + 4u);
    }
}

// Closed descriptors whose connections the kernel still finishes: no process holds them.
TEST(TcpSocketCensus, OrphanedSockets) {
    listening l = listen_on("127.0.0.1", 16, 4096);  // small window, inherited by accepted sockets
    ASSERT_NE(l.port, 0);

    // FIN_WAIT1: the client closes with data the zero window keeps in its send queue, so its
    // FIN cannot leave. The accepted socket, which never reads, stays ESTABLISHED.
    connection stuck;
    stuck.client = connect_to(l.ip, l.port, 4096);
    stuck.server = accept_one(l);
    ASSERT_EQ(::fcntl(stuck.client.get(), F_SETFL, O_NONBLOCK), 0);
    std::vector<char> data(16384, 'x');
    for (;;) {
        while (::write(stuck.client.get(), data.data(), data.size()) > 0) {
        }
        ASSERT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK);
        pollfd p{stuck.client.get(), POLLOUT, 0};
        if (::poll(&p, 1, 50) == 0) break;  // no room for 50 ms: the window is closed
    }
    stuck.client.reset();

    // FIN_WAIT2: the client closes, the server never does (CLOSE_WAIT).
    auto half = connect_many(l, 2);
    for (auto& c : half) c.client.reset();

    const census_query q = loopback_query("L", l);
    expect_census(q, "L", l.port,
                  {
                      {{side::upstream, tcp_state::fin_wait1}, 1},
                      {{side::downstream, tcp_state::established}, 1},
                      {{side::upstream, tcp_state::fin_wait2}, 2},
                      {{side::downstream, tcp_state::close_wait}, 2},
                  });
    if (have_ss()) {
        // Orphans: ss -p finds no process for them.
        const std::string p = std::to_string(l.port);
        const auto orphans = lines_of(run("ss -Htanp '( dport = :" + p + " )' 2>/dev/null"));
        ASSERT_EQ(orphans.size(), 3u);
        for (const auto& line : orphans) EXPECT_EQ(line.find("users:"), std::string::npos) << line;
    }
}

// The accept queue of a backlog-0 listener holds one connection; further SYNs are dropped,
// which leaves the client in SYN_SENT.
TEST(TcpSocketCensus, SynSentAndUnacceptedConnections) {
    listening l = listen_on("127.0.0.1", 0);
    ASSERT_NE(l.port, 0);
    fd queued = connect_to(l.ip, l.port);
    ASSERT_TRUE(eventually([&] {
        return take_census(loopback_query("L", l)).count("L", side::downstream, tcp_state::established) == 1;
    }));
    fd waiting = connect_to(l.ip, l.port, 0, /*blocking=*/false);

    expect_census(loopback_query("L", l), "L", l.port,
                  {
                      {{side::upstream, tcp_state::established}, 1},
                      {{side::downstream, tcp_state::established}, 1},  // in the accept queue
                      {{side::upstream, tcp_state::syn_sent}, 1},
                  });
}

// A socket that matches a listener and an upstream of the same listener is an upstream
// socket, once; listeners that share an upstream each count it.
TEST(TcpSocketCensus, UpstreamSocketsAreCountedOnce) {
    // TCP self-connect: local == remote == 127.0.0.1:port, established by simultaneous open.
    const socket_address any = make_address("127.0.0.1", 0);
    fd self;
    std::vector<fd> busy;
    std::uint16_t port = 0;
    for (int attempt = 0; attempt < 50 && port == 0; ++attempt) {
        fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        ASSERT_EQ(::bind(s.get(), reinterpret_cast<const sockaddr*>(&any.storage), any.length), 0);
        if (quiet_port(local_port(s.get()))) {
            port = local_port(s.get());
            self = std::move(s);
        } else {
            busy.push_back(std::move(s));
        }
    }
    ASSERT_NE(port, 0);
    const socket_address to = make_address("127.0.0.1", port);
    ASSERT_EQ(::connect(self.get(), reinterpret_cast<const sockaddr*>(&to.storage), to.length), 0);

    const endpoint ep = endpoint::parse("127.0.0.1", port);
    census_query q;
    q.listeners.push_back({"S", ep});
    q.listeners.push_back({"S", endpoint::parse("0.0.0.0", port)});  // same listener, two binds
    q.upstreams.push_back({"S", ep});
    q.upstreams.push_back({"S", ep});  // duplicate entry
    q.upstreams.push_back({"T", ep});  // another listener with the same upstream
    q.listeners.push_back({"U", ep});  // a listener whose upstream is elsewhere
    q.upstreams.push_back({"U", endpoint::parse("127.0.0.1", 1)});

    const census_result r = take_census(q);
    EXPECT_EQ(r.sockets_examined, 1u);
    EXPECT_EQ(census_of(r, "S"), (tally{{{side::upstream, tcp_state::established}, 1}}));
    EXPECT_EQ(census_of(r, "T"), (tally{{{side::upstream, tcp_state::established}, 1}}));
    EXPECT_EQ(census_of(r, "U"), (tally{{{side::downstream, tcp_state::established}, 1}}));
    EXPECT_EQ(r.upstreams.size(), 3u);
    EXPECT_EQ(r.upstreams.at({"S", ep}), (census_result::upstream_counts{0, 1}));
    EXPECT_EQ(r.upstreams.at({"T", ep}), (census_result::upstream_counts{0, 1}));
    EXPECT_EQ(r.upstreams.at({"U", endpoint::parse("127.0.0.1", 1)}), (census_result::upstream_counts{0, 0}));
    EXPECT_EQ(r.sockets_toward.at(ep), 1u);
    if (have_ss()) {
        EXPECT_EQ(ss_count("established", port), 1u);
    }
}

TEST(TcpSocketCensus, PortHeadroomTowardAnUpstream) {
    if (const auto why = too_little_time_wait_room()) GTEST_SKIP() << *why;
    listening l = listen_on("127.0.0.1");
    ASSERT_NE(l.port, 0);
    auto conns = connect_many(l, 20);
    for (std::size_t i = 0; i < 8; ++i) close_first(conns[i].client, conns[i].server);

    const endpoint upstream = endpoint::parse("127.0.0.1", l.port);
    const endpoint idle = endpoint::parse("127.0.0.1", 1);
    census_query q = loopback_query("L", l);
    q.upstreams.push_back({"M", upstream});  // shared: sockets_toward still counts each socket once
    q.upstreams.push_back({"M", idle});

    census_result r;
    ASSERT_TRUE(eventually([&] {
        r = take_census(q);
        return r.upstreams.at({"L", upstream}) == census_result::upstream_counts{8, 20};
    }));
    EXPECT_EQ(r.upstreams.at({"M", upstream}), (census_result::upstream_counts{8, 20}));
    EXPECT_EQ(r.sockets_toward.at(upstream), 20u);
    if (have_ss()) {
        EXPECT_EQ(ss_count("all", l.port) - 1 /* LISTEN */, 20u + 12u);
    }

    const port_range range = local_port_range();
    EXPECT_EQ(port_headroom(r, upstream), range.size() - 20);
    EXPECT_EQ(port_headroom(r, upstream, {40000, 40099}), 80u);
    EXPECT_EQ(port_headroom(r, upstream, {40000, 40009}), 0u);  // clamped
    EXPECT_EQ(port_headroom(r, idle, range), range.size());
    EXPECT_THROW(port_headroom(r, endpoint::parse("127.0.0.1", 2)), std::out_of_range);
}

// Queries too big for one bytecode program fall back to filtering in user space, with the
// same result.
TEST(TcpSocketCensus, HugeQueryFallsBackToUserSpaceFiltering) {
    if (const auto why = too_little_time_wait_room()) GTEST_SKIP() << *why;
    listening l = listen_on("127.0.0.1");
    ASSERT_NE(l.port, 0);
    auto conns = connect_many(l, 4);
    close_first(conns[0].client, conns[0].server);

    census_query small = loopback_query("L", l);
    census_query huge = small;
    for (int i = 0; i < 4000; ++i) {
        huge.upstreams.push_back({"X", endpoint::parse("192.0.2." + std::to_string(i % 250 + 1), 1000 + i)});
    }
    census_result a, b;
    ASSERT_TRUE(eventually([&] {
        a = take_census(small);
        b = take_census(huge);
        return a.counts == b.counts;
    }));
    EXPECT_TRUE(a.filtered_in_kernel);
    EXPECT_FALSE(b.filtered_in_kernel);
    EXPECT_GE(b.sockets_examined, a.sockets_examined);
    EXPECT_EQ(census_of(a, "L"), (tally{
                                     {{side::upstream, tcp_state::time_wait}, 1},
                                     {{side::upstream, tcp_state::established}, 3},
                                     {{side::downstream, tcp_state::established}, 3},
                                 }));
}

}  // namespace
