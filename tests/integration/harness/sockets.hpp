#pragma once
// Plain POSIX TCP sockets for the tests. Every socket is non-blocking and
// close-on-exec; every operation that can wait takes a deadline and uses poll().
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace it {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Owns one file descriptor.
class socket_fd {
public:
    socket_fd() = default;
    explicit socket_fd(int fd) noexcept : fd_(fd) {}
    socket_fd(socket_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    socket_fd& operator=(socket_fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    socket_fd(const socket_fd&) = delete;
    socket_fd& operator=(const socket_fd&) = delete;
    ~socket_fd() { reset(); }

    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    void reset() noexcept;  // plain close()
    int release() noexcept { return std::exchange(fd_, -1); }

private:
    int fd_ = -1;
};

// "127.0.0.1:80" / "[::1]:80" → sockaddr; throws std::invalid_argument.
struct endpoint {
    sockaddr_storage addr{};
    socklen_t len = 0;
    int family() const noexcept { return addr.ss_family; }
};
endpoint parse_endpoint(const std::string& host_port);
endpoint make_endpoint(const std::string& host, std::uint16_t port);
std::string to_string(const endpoint& ep);  // "127.0.0.1:80" / "[::1]:80"

// Connects within timeout. On failure returns an empty socket and sets *err (errno
// value; ETIMEDOUT when the deadline passed).
socket_fd connect_tcp(const endpoint& ep, clock::duration timeout, int* err = nullptr);
socket_fd connect_tcp(const std::string& host, std::uint16_t port, clock::duration timeout, int* err = nullptr);

// Listens on host:port (port 0: the kernel picks). Throws on failure.
socket_fd listen_tcp(const std::string& host, std::uint16_t port = 0, int backlog = 128);
// A port on which nothing listens right now: bound, read, closed.
std::uint16_t unused_port(const std::string& host = "127.0.0.1");

std::uint16_t local_port(int fd);
std::uint16_t peer_port(int fd);
endpoint local_endpoint(int fd);

// Accepts within timeout; the accepted socket is non-blocking and close-on-exec.
socket_fd accept_tcp(int listen_fd, clock::duration timeout);

// How a read ended.
enum class read_end {
    data,     // the requested amount arrived (read_exact) / some bytes arrived (read_some)
    eof,      // the peer's FIN: recv returned 0
    reset,    // recv failed with ECONNRESET (the peer's RST)
    timeout,  // the deadline passed first
    error,    // another errno (see err)
};
const char* to_string(read_end end) noexcept;

struct read_result {
    read_end end = read_end::timeout;
    std::string data;
    int err = 0;  // errno for reset/error
    clock::time_point when;  // when the read ended
};

// Reads exactly n bytes unless EOF, reset, error or the deadline comes first.
read_result read_exact(int fd, std::size_t n, clock::time_point deadline);
// Reads until EOF, reset, error or the deadline (never returns read_end::data).
// Keeps at most keep_max bytes in data; counts all of them in *total if given.
read_result read_until_end(int fd, clock::time_point deadline, std::size_t keep_max = SIZE_MAX,
                           std::size_t* total = nullptr);
// Waits for some bytes (at most max), EOF, reset, error, or the deadline.
read_result read_some(int fd, clock::time_point deadline, std::size_t max = 65536);

// Writes everything unless the deadline passes or the socket fails. Returns the
// bytes written; *err gets errno on failure (ETIMEDOUT on deadline).
std::size_t write_all(int fd, std::string_view data, clock::time_point deadline, int* err = nullptr);
bool write_all_ok(int fd, std::string_view data, clock::duration timeout = 10s);

void shutdown_write(int fd);
// SO_LINGER {1,0} and close: the peer gets an RST, nothing is left in TIME_WAIT.
void abort_close(socket_fd& s);

// Bytes in the socket's send queue not yet acknowledged by the peer (SIOCOUTQ).
std::size_t unsent_bytes(int fd);
// Waits until the send queue is empty (every written byte acknowledged).
bool wait_send_queue_empty(int fd, clock::time_point deadline);

// The kernel TCP state from getsockopt(TCP_INFO).tcpi_state (TCP_ESTABLISHED...).
std::optional<int> tcp_state(int fd);
const char* tcp_state_name(int state) noexcept;

// For a socket on which the peer's FIN was already read (so recv only returns 0):
// waits for a pending socket error (poll POLLERR, then SO_ERROR) and returns it,
// or 0 on timeout. The RST after a FIN shows up only this way.
int wait_socket_error(int fd, clock::time_point deadline);

// Both directions at once: writes `out` while reading until `in_expected` bytes
// arrived (or EOF/reset/error/deadline). Used for bulk transfers.
struct exchange_result {
    std::size_t written = 0;
    int write_err = 0;
    read_result read;
};
exchange_result exchange(int fd, std::string_view out, std::size_t in_expected, clock::time_point deadline);

// Sockets in the kernel tables (/proc/net/tcp and tcp6) in TCP state `state`
// (e.g. TCP_TIME_WAIT) whose local or remote port is `port`.
std::size_t count_kernel_sockets(std::uint16_t port, int state);
// Bytes received and not yet read by whoever holds the socket with these ports, from
// /proc/net/tcp{,6} (any process's socket); nullopt if there is none.
std::optional<std::size_t> kernel_unread_bytes(std::uint16_t local_port, std::uint16_t remote_port);
// The same for the sockets of one connection: ports a and b at either end. A port
// alone may match sockets of other connections (and other tests) that used it before.
std::size_t count_kernel_sockets_between(std::uint16_t a, std::uint16_t b, int state);
// The events (EPOLLIN, EPOLLRDHUP, EPOLLET ...) with which process `pid` watches its
// socket with these ports in an epoll instance, from /proc/PID/fdinfo; nullopt if
// there is no such socket or it is not watched.
std::optional<std::uint32_t> epoll_events_of(pid_t pid, std::uint16_t local_port, std::uint16_t remote_port);

// n random bytes from a seeded generator.
std::string random_bytes(std::size_t n, std::uint64_t seed);
// "" when equal; else a short description of the first difference (no data dump).
std::string describe_difference(std::string_view expected, std::string_view actual);

bool ipv6_loopback_available();

}  // namespace it
