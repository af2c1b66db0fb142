#pragma once
// Checks forward-proxy credentials against a listener's users (crypt(3) hashes).
// No I/O and no Asio: the slow check is meant to run off the relay's threads.
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace halfpipe::forward {

class credential_verifier {
public:
    using clock = std::chrono::steady_clock;

    // cache: how long a verified pair is remembered; nullopt remembers nothing.
    credential_verifier(std::vector<config::proxy_user> users, std::optional<std::chrono::milliseconds> cache);

    // Cheap: true when this exact pair was verified within the cache period. A miss
    // says nothing (a wrong password is never rejected here, so guessing always pays
    // the full hash cost). Thread-safe.
    bool remembered(std::string_view user, std::string_view password) const;

    // Slow by design (the hash's full cost, tens of milliseconds for yescrypt): run it on a
    // thread that relays nothing. Unknown users cost as much as known ones, so the
    // time taken does not tell which names exist. Thread-safe.
    bool verify(std::string_view user, std::string_view password);

private:
    struct memo {
        std::string digest;  // of the verified password under memo_salt_, never the password
        clock::time_point expires;
    };
    std::string memo_digest(std::string_view password) const;

    std::vector<config::proxy_user> users_;
    std::optional<clock::duration> cache_;
    std::string memo_salt_;
    mutable std::mutex mutex_;
    std::map<std::string, memo, std::less<>> memos_;  // at most one per configured user
};

}  // namespace halfpipe::forward
