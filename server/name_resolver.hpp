#pragma once
// Host-name lookups off the workers. getaddrinfo(3) blocks and cannot be cancelled,
// and Asio runs it on one thread per io_context: one name whose DNS server never
// answers would hold up every lookup behind it on that worker, past the connect
// deadline. Here lookups run on threads of their own; a session waits for its
// answer or its deadline, whichever comes first, and an answer that comes too late
// is dropped.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/net.hpp"

namespace halfpipe {

class name_resolver {
public:
    // Names waiting for a thread; beyond that a lookup fails at once (no DNS server
    // is that fast: the queue only fills when the servers do not answer).
    static constexpr std::size_t max_queued = 1024;

    // Threads are started as names wait for one, up to max_threads, and leave after
    // a while without work: a getaddrinfo waits for its DNS server, not for a core,
    // so a thread costs little but its stack, and a name that never answers holds
    // one for `timeout`: about how long one lookup may take (config resolve_timeout).
    // nullopt leaves resolv.conf's timeout and attempts as they are.
    name_resolver(std::size_t max_threads, std::optional<std::chrono::milliseconds> timeout);
    // Answers stop here: none reaches an io_context after this. Threads still inside
    // getaddrinfo are not waited for; they end once it returns.
    ~name_resolver();
    name_resolver(const name_resolver&) = delete;
    name_resolver& operator=(const name_resolver&) = delete;

    // The addresses of host, or timed_out once `deadline` (a timer on the calling
    // session's executor) expires first. The timer's waits are cancelled when the
    // answer comes; its expiry is left as it was. Sessions that ask for a name
    // while it is being looked up share that lookup.
    net::awaitable<std::vector<tcp::endpoint>> resolve(const std::string& host, std::uint16_t port,
                                                       net::steady_timer& deadline,
                                                       boost::system::error_code& error);

private:
    struct waiter;
    struct lookup;
    struct shared;
    // A lookup thread's life: takes names from the queue until the resolver closes
    // or no name came for a while.
    static void serve(const std::shared_ptr<shared>& state);
    std::shared_ptr<shared> shared_;
};

}  // namespace halfpipe
