#include "harness/sockets.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace it {

namespace {

// A connect whose handshake completed but whose connection was reset before
// connect_tcp() could look at it (halfpipe resets a client at once when, say, the
// upstream refuses): SO_ERROR then hands over the ECONNRESET, and the socket's next
// recv() would only say EOF. Such sockets are remembered here so that the next
// read, write or error wait on them still reports the reset.
std::mutex g_reset_mutex;
std::set<int> g_reset_before_use;

void remember_reset(int fd) {
    std::lock_guard lock(g_reset_mutex);
    g_reset_before_use.insert(fd);
}

bool take_reset(int fd) {
    std::lock_guard lock(g_reset_mutex);
    return g_reset_before_use.erase(fd) != 0;
}

void forget_reset(int fd) {
    std::lock_guard lock(g_reset_mutex);
    g_reset_before_use.erase(fd);
}

int remaining_ms(clock::time_point deadline) {
    const auto left = deadline - clock::now();
    if (left <= clock::duration::zero()) return 0;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return static_cast<int>(std::min<long long>(ms, 60'000));
}

// poll() one descriptor until an event or the deadline; returns revents (0 on timeout).
short poll_one(int fd, short events, clock::time_point deadline) {
    for (;;) {
        pollfd p{fd, events, 0};
        const int r = ::poll(&p, 1, remaining_ms(deadline));
        if (r > 0) return p.revents;
        if (r == 0) {
            if (clock::now() >= deadline) return 0;
            continue;
        }
        if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
    }
}

read_result finish(read_result r, read_end end, int err = 0) {
    r.end = end;
    r.err = err;
    r.when = clock::now();
    return r;
}

enum class read_mode { exact, until_end, some };

read_result read_loop(int fd, clock::time_point deadline, read_mode mode, std::size_t want, std::size_t keep_max,
                      std::size_t* total) {
    read_result r;
    if (take_reset(fd)) return finish(std::move(r), read_end::reset, ECONNRESET);
    std::size_t got = 0;
    static thread_local std::vector<char> buf(256 * 1024);
    for (;;) {
        std::size_t ask = buf.size();
        if (mode != read_mode::until_end) ask = std::min(ask, want - got);
        const ssize_t n = ::recv(fd, buf.data(), ask, 0);
        if (n > 0) {
            got += static_cast<std::size_t>(n);
            if (total) *total = got;
            if (r.data.size() < keep_max) {
                r.data.append(buf.data(), std::min<std::size_t>(static_cast<std::size_t>(n), keep_max - r.data.size()));
            }
            if (mode == read_mode::some || (mode == read_mode::exact && got == want)) return finish(std::move(r), read_end::data);
            continue;
        }
        if (n == 0) return finish(std::move(r), read_end::eof);
        if (errno == EINTR) continue;
        if (errno == ECONNRESET) return finish(std::move(r), read_end::reset, errno);
        if (errno != EAGAIN && errno != EWOULDBLOCK) return finish(std::move(r), read_end::error, errno);
        if (clock::now() >= deadline) return finish(std::move(r), read_end::timeout);
        poll_one(fd, POLLIN | POLLRDHUP, deadline);
    }
}

}  // namespace

// ---- socket_fd ------------------------------------------------------------

void socket_fd::reset() noexcept {
    if (fd_ >= 0) {
        forget_reset(fd_);
        ::close(fd_);
    }
    fd_ = -1;
}

// ---- endpoints --------------------------------------------------------------

endpoint make_endpoint(const std::string& host, std::uint16_t port) {
    endpoint ep;
    if (host.find(':') != std::string::npos) {
        auto* a6 = reinterpret_cast<sockaddr_in6*>(&ep.addr);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        if (::inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) != 1) throw std::invalid_argument("bad IPv6: " + host);
        ep.len = sizeof(sockaddr_in6);
    } else {
        auto* a4 = reinterpret_cast<sockaddr_in*>(&ep.addr);
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        if (::inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1) throw std::invalid_argument("bad IPv4: " + host);
        ep.len = sizeof(sockaddr_in);
    }
    return ep;
}

endpoint parse_endpoint(const std::string& host_port) {
    const auto colon = host_port.rfind(':');
    if (colon == std::string::npos) throw std::invalid_argument("no port in " + host_port);
    std::string host = host_port.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    const unsigned long port = std::stoul(host_port.substr(colon + 1));
    if (port > 65535) throw std::invalid_argument("bad port in " + host_port);
    return make_endpoint(host, static_cast<std::uint16_t>(port));
}

std::string to_string(const endpoint& ep) {
    char text[INET6_ADDRSTRLEN] = {};
    if (ep.family() == AF_INET6) {
        const auto* a6 = reinterpret_cast<const sockaddr_in6*>(&ep.addr);
        ::inet_ntop(AF_INET6, &a6->sin6_addr, text, sizeof text);
        return "[" + std::string(text) + "]:" + std::to_string(ntohs(a6->sin6_port));
    }
    const auto* a4 = reinterpret_cast<const sockaddr_in*>(&ep.addr);
    ::inet_ntop(AF_INET, &a4->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(a4->sin_port));
}

// ---- connect / listen / accept ---------------------------------------------------

socket_fd connect_tcp(const endpoint& ep, clock::duration timeout, int* err) {
    const auto deadline = clock::now() + timeout;
    int dummy = 0;
    int& e = err ? *err : dummy;
    e = 0;
    socket_fd s(::socket(ep.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!s) {
        e = errno;
        return {};
    }
    if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) == 0) return s;
    if (errno != EINPROGRESS) {
        e = errno;
        return {};
    }
    const short rev = poll_one(s.get(), POLLOUT, deadline);
    if (rev == 0) {
        e = ETIMEDOUT;
        return {};
    }
    // Connected (or connected and already half-closed by the peer): no error to fetch.
    if (auto st = tcp_state(s.get()); st && *st != TCP_CLOSE && *st != TCP_SYN_SENT) return s;
    int so_error = 0;
    socklen_t len = sizeof so_error;
    ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &so_error, &len);
    if (so_error == ECONNRESET) {
        // The handshake completed, then the peer reset the connection.
        remember_reset(s.get());
        return s;
    }
    if (so_error != 0) {
        e = so_error;
        return {};
    }
    return s;
}

socket_fd connect_tcp(const std::string& host, std::uint16_t port, clock::duration timeout, int* err) {
    return connect_tcp(make_endpoint(host, port), timeout, err);
}

socket_fd listen_tcp(const std::string& host, std::uint16_t port, int backlog) {
    const endpoint ep = make_endpoint(host, port);
    socket_fd s(::socket(ep.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!s) throw std::system_error(errno, std::generic_category(), "socket");
    const int one = 1;
    ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(s.get(), reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) != 0)
        throw std::system_error(errno, std::generic_category(), "bind " + host);
    if (::listen(s.get(), backlog) != 0) throw std::system_error(errno, std::generic_category(), "listen");
    return s;
}

std::uint16_t unused_port(const std::string& host) {
    const endpoint ep = make_endpoint(host, 0);
    socket_fd s(::socket(ep.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s || ::bind(s.get(), reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) != 0)
        throw std::system_error(errno, std::generic_category(), "bind for unused_port");
    return local_port(s.get());
}

endpoint local_endpoint(int fd) {
    endpoint ep;
    ep.len = sizeof ep.addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ep.addr), &ep.len);
    return ep;
}

namespace {
std::uint16_t port_of(const sockaddr_storage& a) {
    if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&a)->sin6_port);
    return ntohs(reinterpret_cast<const sockaddr_in*>(&a)->sin_port);
}
}  // namespace

std::uint16_t local_port(int fd) { return port_of(local_endpoint(fd).addr); }

std::uint16_t peer_port(int fd) {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
    return port_of(a);
}

socket_fd accept_tcp(int listen_fd, clock::duration timeout) {
    const auto deadline = clock::now() + timeout;
    for (;;) {
        const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) return socket_fd(fd);
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return {};
        if (clock::now() >= deadline) return {};
        poll_one(listen_fd, POLLIN, deadline);
    }
}

// ---- reading and writing ------------------------------------------------------

const char* to_string(read_end end) noexcept {
    switch (end) {
        case read_end::data: return "data";
        case read_end::eof: return "eof";
        case read_end::reset: return "reset";
        case read_end::timeout: return "timeout";
        case read_end::error: return "error";
    }
    return "?";
}

read_result read_exact(int fd, std::size_t n, clock::time_point deadline) {
    if (n == 0) return finish({}, read_end::data);
    return read_loop(fd, deadline, read_mode::exact, n, SIZE_MAX, nullptr);
}

read_result read_until_end(int fd, clock::time_point deadline, std::size_t keep_max, std::size_t* total) {
    return read_loop(fd, deadline, read_mode::until_end, SIZE_MAX, keep_max, total);
}

read_result read_some(int fd, clock::time_point deadline, std::size_t max) {
    return read_loop(fd, deadline, read_mode::some, std::max<std::size_t>(max, 1), SIZE_MAX, nullptr);
}

std::size_t write_all(int fd, std::string_view data, clock::time_point deadline, int* err) {
    int dummy = 0;
    int& e = err ? *err : dummy;
    e = 0;
    std::size_t done = 0;
    if (take_reset(fd)) {
        e = ECONNRESET;
        return 0;
    }
    while (done < data.size()) {
        const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
        if (n > 0) {
            done += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            e = errno;
            return done;
        }
        if (clock::now() >= deadline) {
            e = ETIMEDOUT;
            return done;
        }
        poll_one(fd, POLLOUT, deadline);
    }
    return done;
}

bool write_all_ok(int fd, std::string_view data, clock::duration timeout) {
    int err = 0;
    return write_all(fd, data, clock::now() + timeout, &err) == data.size() && err == 0;
}

void shutdown_write(int fd) { ::shutdown(fd, SHUT_WR); }

void abort_close(socket_fd& s) {
    if (!s) return;
    forget_reset(s.get());
    const linger l{1, 0};
    ::setsockopt(s.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    s.reset();
}

std::size_t unsent_bytes(int fd) {
    int pending = 0;
    if (::ioctl(fd, SIOCOUTQ, &pending) != 0 || pending < 0) return 0;
    return static_cast<std::size_t>(pending);
}

bool wait_send_queue_empty(int fd, clock::time_point deadline) {
    while (unsent_bytes(fd) != 0) {
        if (clock::now() >= deadline) return false;
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

std::optional<int> tcp_state(int fd) {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return std::nullopt;
    return info.tcpi_state;
}

const char* tcp_state_name(int state) noexcept {
    switch (state) {
        case TCP_ESTABLISHED: return "ESTABLISHED";
        case TCP_SYN_SENT: return "SYN_SENT";
        case TCP_SYN_RECV: return "SYN_RECV";
        case TCP_FIN_WAIT1: return "FIN_WAIT1";
        case TCP_FIN_WAIT2: return "FIN_WAIT2";
        case TCP_TIME_WAIT: return "TIME_WAIT";
        case TCP_CLOSE: return "CLOSE";
        case TCP_CLOSE_WAIT: return "CLOSE_WAIT";
        case TCP_LAST_ACK: return "LAST_ACK";
        case TCP_LISTEN: return "LISTEN";
        case TCP_CLOSING: return "CLOSING";
    }
    return "?";
}

int wait_socket_error(int fd, clock::time_point deadline) {
    if (take_reset(fd)) return ECONNRESET;
    for (;;) {
        // events = 0: only POLLERR / POLLHUP / POLLNVAL are reported, so a socket
        // that already read EOF (always "readable") does not wake us up.
        const short rev = poll_one(fd, 0, deadline);
        if (rev == 0) return 0;
        int so_error = 0;
        socklen_t len = sizeof so_error;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
        if (so_error != 0) return so_error;
        if (rev & (POLLHUP | POLLNVAL)) {
            // Closed without a pending error (e.g. FIN both ways): report the state.
            const auto st = tcp_state(fd);
            return st && *st == TCP_CLOSE ? -1 : -2;
        }
        if (clock::now() >= deadline) return 0;
    }
}

exchange_result exchange(int fd, std::string_view out, std::size_t in_expected, clock::time_point deadline) {
    exchange_result x;
    if (take_reset(fd)) {
        x.write_err = ECONNRESET;
        x.read = finish({}, read_end::reset, ECONNRESET);
        return x;
    }
    x.read.end = read_end::timeout;
    bool reading = in_expected > 0;
    if (!reading) x.read.end = read_end::data;
    bool writing = !out.empty();
    std::vector<char> buf(256 * 1024);
    while (reading || writing) {
        short events = 0;
        if (reading) events |= POLLIN;
        if (writing) events |= POLLOUT;
        pollfd p{fd, events, 0};
        const int r = ::poll(&p, 1, remaining_ms(deadline));
        if (r < 0 && errno == EINTR) continue;
        if (r == 0 && clock::now() >= deadline) {
            if (writing) x.write_err = ETIMEDOUT;
            break;
        }
        if (reading && (p.revents & (POLLIN | POLLERR | POLLHUP))) {
            const std::size_t ask = std::min(buf.size(), in_expected - x.read.data.size());
            const ssize_t n = ::recv(fd, buf.data(), ask, 0);
            if (n > 0) {
                x.read.data.append(buf.data(), static_cast<std::size_t>(n));
                if (x.read.data.size() == in_expected) {
                    reading = false;
                    x.read.end = read_end::data;
                    x.read.when = clock::now();
                }
            } else if (n == 0) {
                reading = false;
                x.read.end = read_end::eof;
                x.read.when = clock::now();
            } else if (errno != EAGAIN && errno != EINTR) {
                reading = false;
                x.read.end = errno == ECONNRESET ? read_end::reset : read_end::error;
                x.read.err = errno;
                x.read.when = clock::now();
            }
        }
        if (writing && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
            const ssize_t n = ::send(fd, out.data() + x.written, out.size() - x.written, MSG_NOSIGNAL);
            if (n > 0) {
                x.written += static_cast<std::size_t>(n);
                if (x.written == out.size()) writing = false;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                x.write_err = errno;
                writing = false;
            }
        }
    }
    return x;
}

// ---- kernel tables ------------------------------------------------------------

namespace {
struct kernel_socket {
    std::uint16_t local_port;
    std::uint16_t remote_port;
    int state;           // TCP_* from netinet/tcp.h
    std::size_t unread;  // rx_queue
    unsigned long inode;
};

// Every TCP socket of the namespace, from /proc/net/tcp{,6}; stops when visit returns true.
template <typename Visit>
void visit_kernel_sockets(Visit visit) {
    auto port_of = [](const std::string& addr) {
        return static_cast<std::uint16_t>(std::stoul(addr.substr(addr.rfind(':') + 1), nullptr, 16));
    };
    for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
        std::ifstream in(table);
        std::string line;
        std::getline(in, line);  // header
        while (std::getline(in, line)) {
            std::istringstream fields(line);
            std::string sl, local, remote, st, queues, timer, retransmits, uid, timeout;
            unsigned long inode = 0;
            if (!(fields >> sl >> local >> remote >> st >> queues >> timer >> retransmits >> uid >> timeout >> inode))
                continue;
            const kernel_socket k{port_of(local), port_of(remote), static_cast<int>(std::stoul(st, nullptr, 16)),
                                  static_cast<std::size_t>(std::stoul(queues.substr(queues.find(':') + 1), nullptr, 16)),
                                  inode};
            if (visit(k)) return;
        }
    }
}

// Sockets in `state` whose (local, remote) ports match.
template <typename Match>
std::size_t count_kernel_sockets_if(int state, Match match) {
    std::size_t n = 0;
    visit_kernel_sockets([&](const kernel_socket& k) {
        if (k.state == state && match(k.local_port, k.remote_port)) ++n;
        return false;
    });
    return n;
}
}  // namespace

std::optional<std::size_t> kernel_unread_bytes(std::uint16_t local_port, std::uint16_t remote_port) {
    std::optional<std::size_t> unread;
    visit_kernel_sockets([&](const kernel_socket& k) {
        if (k.local_port != local_port || k.remote_port != remote_port) return false;
        unread = k.unread;
        return true;
    });
    return unread;
}

std::optional<std::uint32_t> epoll_events_of(pid_t pid, std::uint16_t local_port, std::uint16_t remote_port) {
    unsigned long inode = 0;
    visit_kernel_sockets([&](const kernel_socket& k) {
        if (k.local_port != local_port || k.remote_port != remote_port) return false;
        inode = k.inode;
        return true;
    });
    if (inode == 0) return std::nullopt;
    // An epoll descriptor's fdinfo has a line per watched file:
    //   tfd:       13 events: 80002019 data: ... pos:0 ino:4f2a1 sdev:8
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fdinfo", ec)) {
        std::ifstream in(entry.path());
        std::string line;
        while (std::getline(in, line)) {
            if (line.rfind("tfd:", 0) != 0) continue;
            const auto events_at = line.find("events:");
            const auto ino_at = line.find("ino:");
            if (events_at == std::string::npos || ino_at == std::string::npos) continue;
            if (std::stoul(line.substr(ino_at + 4), nullptr, 16) != inode) continue;
            return static_cast<std::uint32_t>(std::stoul(line.substr(events_at + 7), nullptr, 16));
        }
    }
    return std::nullopt;
}

std::size_t count_kernel_sockets(std::uint16_t port, int state) {
    return count_kernel_sockets_if(state, [&](std::uint16_t local, std::uint16_t remote) {
        return local == port || remote == port;
    });
}

std::size_t count_kernel_sockets_between(std::uint16_t a, std::uint16_t b, int state) {
    return count_kernel_sockets_if(state, [&](std::uint16_t local, std::uint16_t remote) {
        return (local == a && remote == b) || (local == b && remote == a);
    });
}

// ---- data -----------------------------------------------------------------

std::string random_bytes(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 gen(seed);
    std::string s(n, '\0');
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const std::uint64_t v = gen();
        std::memcpy(s.data() + i, &v, 8);
    }
    for (; i < n; ++i) s[i] = static_cast<char>(gen());
    return s;
}

std::string describe_difference(std::string_view expected, std::string_view actual) {
    if (expected == actual) return {};
    std::ostringstream out;
    out << "expected " << expected.size() << " bytes, got " << actual.size();
    const std::size_t common = std::min(expected.size(), actual.size());
    std::size_t i = 0;
    while (i < common && expected[i] == actual[i]) ++i;
    if (i < common) out << "; first difference at offset " << i;
    else out << "; one is a prefix of the other (common length " << common << ")";
    return out.str();
}

bool ipv6_loopback_available() {
    socket_fd s(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) return false;
    const endpoint ep = make_endpoint("::1", 0);
    return ::bind(s.get(), reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) == 0;
}

}  // namespace it
