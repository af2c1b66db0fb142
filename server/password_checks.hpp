#pragma once
// Password verification off the relay's threads, with a bounded queue: slow hashes
// must neither stall a worker nor pile up without limit when clients guess.
#include <atomic>
#include <cstddef>
#include <string>

#include "common/net.hpp"
#include "server/forward/credential_verifier.hpp"

namespace halfpipe {

class password_checks {
public:
    // Checks waiting or running at once; beyond that a client is turned away at once
    // (at 25-100 ms per yescrypt hash on one thread, the last waits 2-6 s; the handshake
    // deadline still applies).
    static constexpr std::size_t max_queued = 64;

    // One thread at nice 10: it bounds the CPU a guessing client can take, and the relay
    // comes first where the cores are busy.
    password_checks();

    enum class verdict { accepted, rejected, busy };

    // A remembered pair is accepted on the caller's thread; anything else is verified
    // on the pool, and the caller resumes on its own executor.
    net::awaitable<verdict> check(forward::credential_verifier& verifier, const std::string& user,
                                  const std::string& password);

private:
    net::thread_pool pool_;
    std::atomic<std::size_t> queued_{0};
};

}  // namespace halfpipe
