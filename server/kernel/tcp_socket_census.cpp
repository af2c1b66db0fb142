#include "server/kernel/tcp_socket_census.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <system_error>

// How the census works
// --------------------
// For each address family one SOCK_DIAG_BY_FAMILY dump (NLM_F_DUMP) of IPPROTO_TCP is
// requested with every state but LISTEN in idiag_states, and with an INET_DIAG_REQ_BYTECODE
// program that keeps only sockets whose
//   - local address:port matches a listener endpoint (INET_DIAG_BC_S_COND), or
//   - remote address:port is an upstream endpoint (INET_DIAG_BC_D_COND).
// S_COND/D_COND carry an inet_diag_hostcond {family, prefix_len, port, address}: the kernel
// compares the port (unless -1) and the leading prefix_len bits of the address in one op,
// so the address is filtered in the kernel as well and S_EQ/D_EQ (port only) are not
// needed. The kernel's semantics, which the user-space classification below mirrors:
//   - family AF_UNSPEC with prefix 0 matches any address (our "::" listener: dual stack);
//   - family AF_INET also matches IPv4-mapped addresses of AF_INET6 sockets, so IPv4
//     listeners and upstreams are found among dual-stack sockets too;
//   - family AF_INET6 never matches an AF_INET socket.
// The conditions are OR-ed the way ss does it:
//   cond1 {yes: next op, no: skip the JMP}  JMP {no: end = accept}  cond2 ...  condN {no: end+4 = reject}
// A socket is accepted when execution lands exactly on the end of the program.
//
// The kernel result is then classified in user space (the filter cannot tell which
// listener a socket belongs to), without allocating per socket: counters live in flat
// arrays indexed by listener and state and are turned into the public maps at the end.
//
// Kernel behaviour worth knowing (checked on 6.18 with ss and the unit tests, or read in
// net/ipv4/inet_diag.c where marked):
//   - TIME_WAIT sockets are inet_timewait_sock mini-sockets: idiag_inode and idiag_uid 0,
//     no attributes; idiag_state is the tw_substate, TIME_WAIT (6) or FIN_WAIT2 (5). An
//     orphaned FIN_WAIT2 socket (fd closed, peer has not closed) becomes such a mini-socket
//     at once when tcp_fin_timeout <= 60 s (ss: "FIN-WAIT-2 ... timer:(timewait,..) ino:0")
//     and is reported, and selected by idiag_states, as FIN_WAIT2.
//   - Orphaned full sockets (FIN_WAIT1 with unsent data, LAST_ACK, CLOSING) have inode 0.
//   - Connections completed but not yet accept()ed are ESTABLISHED sockets with the
//     listener's local address:port, so they count as downstream.
//   - (source) Embryonic connections, request sockets in TCP_NEW_SYN_RECV (12), are
//     reported as SYN_RECV (3); asking for SYN_RECV makes the kernel include them.
//   - A dump hands out one skb per recvmsg: ~3.7 KiB for the first, then ~32 KiB, whatever
//     the buffer is. Dumps are flow-controlled (nothing is lost; SO_RCVBUF does not matter)
//     but not an atomic snapshot of the hash table.
//   - Cost: each dump walks the whole established/TIME_WAIT hash table under its bucket
//     locks, running the bytecode on every TCP socket of the network namespace (and, since
//     namespaces share the table unless net.ipv4.tcp_child_ehash_entries is set, skipping
//     every socket of other namespaces), so it grows with all sockets, not just ours. In a
//     2-vCPU VM: ~1 us per returned socket, ~0.5 us per skipped one; user space ~60 ns per
//     socket. Run the census off the I/O threads.

namespace halfpipe::kernel {
namespace {

[[noreturn]] void throw_errno(int error, const char* what) {
    throw std::system_error(error, std::system_category(), what);
}

constexpr std::array<std::uint8_t, 12> v4_mapped_prefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

constexpr std::size_t state_slots = 12;  // indexed by the kernel's state number, 1..11
constexpr std::uint32_t wanted_states =
    ((1u << state_slots) - 1) & ~(1u << 0) & ~(1u << static_cast<unsigned>(tcp_state::listen));

// The bytecode's offsets are 16 bits (inet_diag_bc_op::no) and so is the netlink attribute
// length; a program longer than this is not sent and the dump is filtered here instead.
constexpr std::size_t max_bytecode = 60000;
constexpr std::size_t receive_buffer = 64 * 1024;
constexpr int receive_timeout_seconds = 5;

class fd_guard {
public:
    explicit fd_guard(int fd) noexcept : fd_(fd) {}
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    ~fd_guard() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const noexcept { return fd_; }

private:
    int fd_;
};

// ---------------------------------------------------------------------------------------
// The bytecode filter

struct host_condition {
    std::uint8_t code = INET_DIAG_BC_NOP;  // INET_DIAG_BC_S_COND or INET_DIAG_BC_D_COND
    std::uint8_t family = AF_UNSPEC;
    std::uint8_t prefix_len = 0;
    std::uint16_t port = 0;
    std::array<std::uint8_t, 16> addr{};

    std::size_t address_bytes() const noexcept {
        return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
    }
    std::size_t size() const noexcept {
        return sizeof(inet_diag_bc_op) + sizeof(inet_diag_hostcond) + address_bytes();
    }
    friend auto operator<=>(const host_condition&, const host_condition&) = default;
};

host_condition condition_for(std::uint8_t code, const endpoint& ep) {
    host_condition c;
    c.code = code;
    c.port = ep.port;
    if (code == INET_DIAG_BC_S_COND && ep.is_unspecified()) {
        // 0.0.0.0: any IPv4 (and IPv4-mapped) local address; "::": any local address.
        c.family = ep.v6 ? AF_UNSPEC : AF_INET;
        c.prefix_len = 0;
    } else {
        c.family = ep.v6 ? AF_INET6 : AF_INET;
        c.prefix_len = ep.v6 ? 128 : 32;
        c.addr = ep.addr;
    }
    return c;
}

// The program for one dump family; empty when nothing of that family can match.
std::vector<host_condition> conditions_for(const census_query& query, int family) {
    std::vector<host_condition> conditions;
    auto add = [&](std::uint8_t code, const endpoint& ep) {
        host_condition c = condition_for(code, ep);
        // AF_INET conditions also match IPv4-mapped AF_INET6 sockets; AF_INET6 ones never
        // match AF_INET sockets, so they are left out of the AF_INET program.
        if (family == AF_INET && c.family == AF_INET6) return;
        if (family == AF_INET6 && c.family == AF_INET && !query.ipv4_mapped) return;
        conditions.push_back(c);
    };
    for (const auto& [name, ep] : query.listeners) add(INET_DIAG_BC_S_COND, ep);
    for (const auto& [name, ep] : query.upstreams) add(INET_DIAG_BC_D_COND, ep);
    std::sort(conditions.begin(), conditions.end());
    conditions.erase(std::unique(conditions.begin(), conditions.end()), conditions.end());
    return conditions;
}

// Assembles cond1 OR cond2 OR ... (see the comment at the top). Returns false when the
// program would be too long for the 16-bit offsets.
bool assemble(const std::vector<host_condition>& conditions, std::vector<std::uint8_t>& out) {
    if (conditions.empty()) return false;
    std::size_t total = 0;
    for (const auto& c : conditions) total += c.size() + sizeof(inet_diag_bc_op);
    total -= sizeof(inet_diag_bc_op);  // no JMP after the last condition
    if (total > max_bytecode) return false;

    out.assign(total, 0);
    std::size_t at = 0;
    for (std::size_t i = 0; i < conditions.size(); ++i) {
        const host_condition& c = conditions[i];
        const bool last = i + 1 == conditions.size();
        inet_diag_bc_op op{};
        op.code = c.code;
        op.yes = static_cast<unsigned char>(c.size());
        // Not last: false skips the JMP to the next condition. Last: false jumps 4 bytes
        // past the end, which the kernel treats as "reject".
        op.no = static_cast<unsigned short>(c.size() + sizeof(inet_diag_bc_op));
        std::memcpy(out.data() + at, &op, sizeof op);

        inet_diag_hostcond cond{};
        cond.family = c.family;
        cond.prefix_len = c.prefix_len;
        cond.port = c.port;
        std::memcpy(out.data() + at + sizeof op, &cond, sizeof cond);
        std::memcpy(out.data() + at + sizeof op + sizeof cond, c.addr.data(), c.address_bytes());
        at += c.size();

        if (!last) {
            // A true condition falls through to this JMP, which always takes `no`: exactly
            // the end of the program, i.e. accept.
            inet_diag_bc_op jump{};
            jump.code = INET_DIAG_BC_JMP;
            jump.yes = sizeof(inet_diag_bc_op);
            jump.no = static_cast<unsigned short>(total - at);
            std::memcpy(out.data() + at, &jump, sizeof jump);
            at += sizeof jump;
        }
    }
    return true;
}

// ---------------------------------------------------------------------------------------
// Classification into listeners, sides and states

class classifier {
public:
    explicit classifier(const census_query& query) {
        auto group_of = [this](const std::string& name) {
            auto it = std::find(names_.begin(), names_.end(), name);
            if (it != names_.end()) return static_cast<std::uint32_t>(it - names_.begin());
            names_.push_back(name);
            return static_cast<std::uint32_t>(names_.size() - 1);
        };
        for (const auto& [name, ep] : query.listeners) {
            if (ep.port == 0) throw std::invalid_argument("census: listener " + name + " has port 0");
            listeners_.push_back({ep, group_of(name)});
        }
        for (const auto& [name, ep] : query.upstreams) {
            if (ep.port == 0) throw std::invalid_argument("census: upstream of " + name + " has port 0");
            upstreams_.push_back({ep, group_of(name), 0, 0});
            targets_.push_back(ep);
        }
        std::sort(listeners_.begin(), listeners_.end(),
                  [](const auto& a, const auto& b) { return a.ep.port < b.ep.port; });

        std::sort(targets_.begin(), targets_.end());
        targets_.erase(std::unique(targets_.begin(), targets_.end()), targets_.end());
        std::sort(upstreams_.begin(), upstreams_.end(), [](const auto& a, const auto& b) {
            return std::tie(a.ep, a.group) < std::tie(b.ep, b.group);
        });
        upstreams_.erase(std::unique(upstreams_.begin(), upstreams_.end(),
                                     [](const auto& a, const auto& b) {
                                         return a.ep == b.ep && a.group == b.group;
                                     }),
                         upstreams_.end());
        for (std::size_t i = 0; i < upstreams_.size(); ++i) {
            upstreams_[i].pair = static_cast<std::uint32_t>(i);
            upstreams_[i].target = static_cast<std::uint32_t>(
                std::lower_bound(targets_.begin(), targets_.end(), upstreams_[i].ep) - targets_.begin());
        }

        downstream_.assign(names_.size(), {});
        upstream_.assign(names_.size(), {});
        stamp_.assign(names_.size(), 0);
        pairs_.assign(upstreams_.size(), {});
        toward_.assign(targets_.size(), 0);
    }

    bool empty() const noexcept { return listeners_.empty() && upstreams_.empty(); }

    // `ipv4_ok` false: the socket is AF_INET6 and the query excludes IPv4-mapped sockets, so
    // its (mapped) IPv4 addresses match no IPv4 endpoint, only "::" listeners. This matters
    // only without the kernel filter, which applies the same rule.
    void add(std::uint8_t state, const endpoint& local, const endpoint& remote, bool ipv4_ok) noexcept {
        ++examined_;
        if (state == 0 || state >= state_slots || state == static_cast<std::uint8_t>(tcp_state::listen)) return;
        ++socket_;  // marks the listeners this socket has been counted for

        auto [first, last] = std::equal_range(upstreams_.begin(), upstreams_.end(), remote,
                                              upstream_order{});
        if (!ipv4_ok && !remote.v6) first = last;
        if (first != last) ++toward_[first->target];
        for (auto it = first; it != last; ++it) {
            stamp_[it->group] = socket_;
            ++upstream_[it->group][state];
            auto& pair = pairs_[it->pair];
            ++pair.total;
            if (state == static_cast<std::uint8_t>(tcp_state::time_wait)) ++pair.time_wait;
        }

        auto [lfirst, llast] = std::equal_range(listeners_.begin(), listeners_.end(), local.port,
                                                listener_order{});
        for (auto it = lfirst; it != llast; ++it) {
            if (stamp_[it->group] == socket_ || !local_matches(it->ep, local)) continue;
            if (!ipv4_ok && !local.v6 && !it->ep.v6) continue;
            stamp_[it->group] = socket_;
            ++downstream_[it->group][state];
        }
    }

    census_result result(bool filtered_in_kernel) const {
        census_result r;
        r.sockets_examined = examined_;
        r.filtered_in_kernel = filtered_in_kernel;
        for (std::size_t g = 0; g < names_.size(); ++g) {
            for (std::size_t s = 1; s < state_slots; ++s) {
                const auto state = static_cast<tcp_state>(s);
                if (downstream_[g][s] != 0) r.counts[{names_[g], side::downstream, state}] = downstream_[g][s];
                if (upstream_[g][s] != 0) r.counts[{names_[g], side::upstream, state}] = upstream_[g][s];
            }
        }
        for (const auto& u : upstreams_) r.upstreams[{names_[u.group], u.ep}] = pairs_[u.pair];
        for (std::size_t t = 0; t < targets_.size(); ++t) r.sockets_toward[targets_[t]] = toward_[t];
        return r;
    }

private:
    struct listener_entry {
        endpoint ep;
        std::uint32_t group;
    };
    struct upstream_entry {
        endpoint ep;
        std::uint32_t group;
        std::uint32_t pair;    // index into pairs_
        std::uint32_t target;  // index into targets_/toward_
    };
    struct upstream_order {
        bool operator()(const upstream_entry& a, const endpoint& b) const noexcept { return a.ep < b; }
        bool operator()(const endpoint& a, const upstream_entry& b) const noexcept { return a < b.ep; }
    };
    struct listener_order {
        bool operator()(const listener_entry& a, std::uint16_t b) const noexcept { return a.ep.port < b; }
        bool operator()(std::uint16_t a, const listener_entry& b) const noexcept { return a < b.ep.port; }
    };

    // Mirrors the kernel's S_COND semantics for the conditions built by condition_for().
    static bool local_matches(const endpoint& listener, const endpoint& local) noexcept {
        if (!listener.is_unspecified()) return listener.v6 == local.v6 && listener.addr == local.addr;
        return listener.v6 || !local.v6;
    }

    std::vector<std::string> names_;
    std::vector<listener_entry> listeners_;  // sorted by port
    std::vector<upstream_entry> upstreams_;  // sorted by endpoint, unique per (endpoint, listener)
    std::vector<endpoint> targets_;          // distinct upstream endpoints, sorted

    std::vector<std::array<std::uint64_t, state_slots>> downstream_, upstream_;
    std::vector<std::uint64_t> stamp_;
    std::vector<census_result::upstream_counts> pairs_;
    std::vector<std::uint64_t> toward_;
    std::uint64_t socket_ = 0;
    std::uint64_t examined_ = 0;
};

// ---------------------------------------------------------------------------------------
// Netlink

void send_dump_request(int fd, std::uint8_t family, std::uint32_t seq,
                       const std::vector<std::uint8_t>* bytecode) {
    const std::size_t attribute = bytecode ? sizeof(nlattr) + bytecode->size() : 0;
    std::vector<std::uint8_t> message(NLMSG_LENGTH(sizeof(inet_diag_req_v2)) + attribute, 0);

    nlmsghdr header{};
    header.nlmsg_len = static_cast<std::uint32_t>(message.size());
    header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.nlmsg_seq = seq;
    std::memcpy(message.data(), &header, sizeof header);

    inet_diag_req_v2 request{};
    request.sdiag_family = family;
    request.sdiag_protocol = IPPROTO_TCP;
    request.idiag_ext = 0;  // no extensions: the bare inet_diag_msg is all we read
    request.idiag_states = wanted_states;
    std::memcpy(message.data() + NLMSG_HDRLEN, &request, sizeof request);

    if (bytecode) {
        nlattr attr{};
        attr.nla_len = static_cast<std::uint16_t>(attribute);
        attr.nla_type = INET_DIAG_REQ_BYTECODE;
        std::uint8_t* at = message.data() + NLMSG_LENGTH(sizeof(inet_diag_req_v2));
        std::memcpy(at, &attr, sizeof attr);
        std::memcpy(at + sizeof(nlattr), bytecode->data(), bytecode->size());
    }

    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    for (;;) {
        const ssize_t sent = ::sendto(fd, message.data(), message.size(), 0,
                                      reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel);
        if (sent == static_cast<ssize_t>(message.size())) return;
        if (sent < 0 && errno == EINTR) continue;
        throw_errno(sent < 0 ? errno : EMSGSIZE, "census: sending the sock_diag request");
    }
}

template <typename OnSocket>
void receive_dump(int fd, std::uint32_t seq, std::vector<std::uint64_t>& buffer, OnSocket&& on_socket) {
    auto* bytes = reinterpret_cast<std::uint8_t*>(buffer.data());
    const std::size_t capacity = buffer.size() * sizeof(std::uint64_t);
    for (;;) {
        iovec iov{bytes, capacity};
        sockaddr_nl from{};
        msghdr mh{};
        mh.msg_name = &from;
        mh.msg_namelen = sizeof from;
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        const ssize_t received = ::recvmsg(fd, &mh, 0);
        if (received < 0) {
            if (errno == EINTR) continue;
            throw_errno(errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno,
                        "census: receiving the sock_diag dump");
        }
        if (mh.msg_flags & MSG_TRUNC) throw_errno(EMSGSIZE, "census: sock_diag message truncated");
        if (received == 0) throw_errno(ENODATA, "census: sock_diag dump ended without NLMSG_DONE");

        std::size_t at = 0;
        const auto end = static_cast<std::size_t>(received);
        // at can pass end: the last message's alignment padding may not have been sent.
        while (at < end && end - at >= sizeof(nlmsghdr)) {
            nlmsghdr header;
            std::memcpy(&header, bytes + at, sizeof header);
            if (header.nlmsg_len < sizeof(nlmsghdr) || header.nlmsg_len > end - at) {
                throw_errno(EBADMSG, "census: malformed sock_diag message");
            }
            const std::uint8_t* payload = bytes + at + NLMSG_HDRLEN;
            const std::size_t payload_len = header.nlmsg_len - std::min<std::size_t>(header.nlmsg_len, NLMSG_HDRLEN);
            at += NLMSG_ALIGN(header.nlmsg_len);

            if (header.nlmsg_seq != seq) continue;
            if (header.nlmsg_type == NLMSG_DONE) {
                int error = 0;
                if (payload_len >= sizeof error) std::memcpy(&error, payload, sizeof error);
                if (error < 0) throw_errno(-error, "census: sock_diag dump failed");
                return;
            }
            if (header.nlmsg_type == NLMSG_ERROR) {
                nlmsgerr error{};
                std::memcpy(&error, payload, std::min(payload_len, sizeof error));
                if (error.error == 0) continue;  // an acknowledgement, not a failure
                throw_errno(-error.error, "census: sock_diag request rejected");
            }
            if (header.nlmsg_type != SOCK_DIAG_BY_FAMILY || payload_len < sizeof(inet_diag_msg)) continue;
            inet_diag_msg message;
            std::memcpy(&message, payload, sizeof message);
            on_socket(message);
        }
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------

std::string_view state_name(tcp_state state) noexcept {
    switch (state) {
        case tcp_state::established: return "ESTABLISHED";
        case tcp_state::syn_sent: return "SYN_SENT";
        case tcp_state::syn_recv: return "SYN_RECV";
        case tcp_state::fin_wait1: return "FIN_WAIT1";
        case tcp_state::fin_wait2: return "FIN_WAIT2";
        case tcp_state::time_wait: return "TIME_WAIT";
        case tcp_state::close: return "CLOSE";
        case tcp_state::close_wait: return "CLOSE_WAIT";
        case tcp_state::last_ack: return "LAST_ACK";
        case tcp_state::listen: return "LISTEN";
        case tcp_state::closing: return "CLOSING";
    }
    return "UNKNOWN";
}

std::string_view side_name(side s) noexcept {
    return s == side::downstream ? "downstream" : "upstream";
}

endpoint endpoint::from_raw(int family, const void* address, std::uint16_t port) noexcept {
    endpoint ep;
    ep.port = port;
    const auto* bytes = static_cast<const std::uint8_t*>(address);
    if (family == AF_INET) {
        std::memcpy(ep.addr.data(), bytes, 4);
    } else if (family == AF_INET6) {
        if (std::memcmp(bytes, v4_mapped_prefix.data(), v4_mapped_prefix.size()) == 0) {
            std::memcpy(ep.addr.data(), bytes + 12, 4);
        } else {
            std::memcpy(ep.addr.data(), bytes, 16);
            ep.v6 = true;
        }
    }
    return ep;
}

endpoint endpoint::parse(std::string_view address, std::uint16_t port) {
    std::string text(address);
    if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
    if (text.find(':') != std::string::npos) {
        in6_addr a6{};
        if (::inet_pton(AF_INET6, text.c_str(), &a6) == 1) return from_raw(AF_INET6, &a6, port);
    } else {
        in_addr a4{};
        if (::inet_pton(AF_INET, text.c_str(), &a4) == 1) return from_raw(AF_INET, &a4, port);
    }
    throw std::invalid_argument("not an IP address: \"" + std::string(address) + "\"");
}

bool endpoint::is_unspecified() const noexcept {
    return std::all_of(addr.begin(), addr.end(), [](std::uint8_t b) { return b == 0; });
}

std::string endpoint::address_string() const {
    char text[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(v6 ? AF_INET6 : AF_INET, addr.data(), text, sizeof text);
    return text;
}

std::string endpoint::to_string() const {
    return (v6 ? "[" + address_string() + "]" : address_string()) + ":" + std::to_string(port);
}

std::uint64_t census_result::count(std::string_view listener, side s, tcp_state state) const {
    auto it = counts.find(std::tuple{std::string(listener), s, state});
    return it == counts.end() ? 0 : it->second;
}

std::uint64_t census_result::total(std::string_view listener, side s) const {
    std::uint64_t sum = 0;
    for (tcp_state state : all_tcp_states) sum += count(listener, s, state);
    return sum;
}

census_result take_census(const census_query& query) {
    classifier census(query);
    if (census.empty()) return census.result(true);

    const fd_guard fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    if (fd.get() < 0) throw_errno(errno, "census: opening a NETLINK_SOCK_DIAG socket");
    // A dump cannot stall, but a scrape must never hang on one either.
    const timeval timeout{receive_timeout_seconds, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);

    std::vector<std::uint64_t> buffer(receive_buffer / sizeof(std::uint64_t));  // 8-byte aligned
    std::vector<std::uint8_t> bytecode;
    bool filtered_in_kernel = true;
    std::uint32_t seq = 0;

    for (const int family : {AF_INET, AF_INET6}) {
        const auto conditions = conditions_for(query, family);
        if (conditions.empty()) continue;  // nothing of this family can match
        const bool fits = assemble(conditions, bytecode);
        filtered_in_kernel = filtered_in_kernel && fits;

        send_dump_request(fd.get(), static_cast<std::uint8_t>(family), ++seq, fits ? &bytecode : nullptr);
        receive_dump(fd.get(), seq, buffer, [&](const inet_diag_msg& m) {
            const endpoint local = endpoint::from_raw(m.idiag_family, m.id.idiag_src, ntohs(m.id.idiag_sport));
            const endpoint remote = endpoint::from_raw(m.idiag_family, m.id.idiag_dst, ntohs(m.id.idiag_dport));
            census.add(m.idiag_state, local, remote, query.ipv4_mapped || m.idiag_family == AF_INET);
        });
    }
    return census.result(filtered_in_kernel);
}

port_range parse_port_range(std::string_view text) {
    unsigned values[2] = {};
    const char* at = text.data();
    const char* const end = text.data() + text.size();
    for (unsigned& value : values) {
        while (at != end && (*at == ' ' || *at == '\t' || *at == '\n')) ++at;
        const auto [next, error] = std::from_chars(at, end, value);
        if (error != std::errc{} || value == 0 || value > 65535) {
            throw std::invalid_argument("not a port range: \"" + std::string(text) + "\"");
        }
        at = next;
    }
    while (at != end && (*at == ' ' || *at == '\t' || *at == '\n')) ++at;
    if (at != end || values[0] > values[1]) {
        throw std::invalid_argument("not a port range: \"" + std::string(text) + "\"");
    }
    return {static_cast<std::uint16_t>(values[0]), static_cast<std::uint16_t>(values[1])};
}

port_range local_port_range() {
    constexpr const char* path = "/proc/sys/net/ipv4/ip_local_port_range";
    const fd_guard fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) throw_errno(errno, "census: opening /proc/sys/net/ipv4/ip_local_port_range");
    char text[64];
    ssize_t n;
    do {
        n = ::read(fd.get(), text, sizeof text);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw_errno(errno, "census: reading /proc/sys/net/ipv4/ip_local_port_range");
    try {
        return parse_port_range(std::string_view(text, static_cast<std::size_t>(n)));
    } catch (const std::invalid_argument&) {
        throw_errno(EINVAL, "census: unexpected /proc/sys/net/ipv4/ip_local_port_range");
    }
}

std::uint64_t port_headroom(const census_result& census, const endpoint& upstream, port_range range) {
    auto it = census.sockets_toward.find(upstream);
    if (it == census.sockets_toward.end()) {
        throw std::out_of_range("census: " + upstream.to_string() + " is not an upstream of the census");
    }
    return it->second >= range.size() ? 0 : range.size() - it->second;
}

std::uint64_t port_headroom(const census_result& census, const endpoint& upstream) {
    return port_headroom(census, upstream, local_port_range());
}

}  // namespace halfpipe::kernel
