#include "server/forward/credential_verifier.hpp"

#include <crypt.h>

#include <memory>
#include <stdexcept>

namespace halfpipe::forward {
namespace {

// Cheap on purpose (a few microseconds, against 0.3 ms for the 1,000 rounds of SHA-512
// crypt): the memo is checked on the relay's threads, for every login of a remembered
// user, wrong passwords included. Its digests only stand between a remembered password
// and a copy of it in memory; the users file's hashes are what resists guessing.
// SHA-1 crypt is HMAC-SHA1 iterated, keyed by the password, salted at random. A
// libcrypt built with strong hashes only has no SHA-1 crypt: there the memo takes
// SHA-512 crypt at its fewest rounds, dearer but present in every build.
struct memo_method {
    const char* prefix;
    unsigned long rounds;
};
constexpr memo_method memo_methods[] = {{"$sha1$", 4}, {"$6$", 1000}};

// crypt_rn's work area is 32 KiB: one per thread, not per call.
crypt_data& work_area() {
    thread_local auto data = std::make_unique<crypt_data>();
    return *data;
}

// nullopt when libcrypt refuses the setting (it fails closed with "*0" or NULL), and
// for a password with a NUL byte (RFC 1929 allows one): crypt would stop there, and
// "x\0anything" would pass for "x".
std::optional<std::string> hash_with(std::string_view password, const std::string& setting) {
    if (password.find('\0') != std::string_view::npos) return std::nullopt;
    const std::string phrase(password);
    auto& data = work_area();
    const char* out = crypt_rn(phrase.c_str(), setting.c_str(), &data, sizeof data);
    if (out == nullptr || out[0] == '*') return std::nullopt;
    return std::string(out);
}

bool equal_constant_time(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    unsigned char diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

std::string new_memo_salt() {
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    // A null random buffer makes libcrypt draw the salt from the kernel's entropy.
    for (const auto& method : memo_methods)
        if (crypt_gensalt_rn(method.prefix, method.rounds, nullptr, 0, salt, sizeof salt) != nullptr) return salt;
    throw std::runtime_error("crypt_gensalt failed for the credentials cache");
}

}  // namespace

credential_verifier::credential_verifier(std::vector<config::proxy_user> users,
                                         std::optional<std::chrono::milliseconds> cache)
    : users_(std::move(users)), memo_salt_(cache ? new_memo_salt() : std::string()) {
    if (users_.empty()) throw std::invalid_argument("credential_verifier without users");
    if (cache) cache_ = std::chrono::duration_cast<clock::duration>(*cache);
}

std::string credential_verifier::memo_digest(std::string_view password) const {
    return hash_with(password, memo_salt_).value_or(std::string());
}

bool credential_verifier::remembered(std::string_view user, std::string_view password) const {
    if (!cache_) return false;
    std::string digest;
    {
        std::lock_guard lock(mutex_);
        auto it = memos_.find(user);
        if (it == memos_.end() || it->second.expires <= clock::now()) return false;
        digest = it->second.digest;
    }
    const auto candidate = memo_digest(password);
    return !candidate.empty() && equal_constant_time(candidate, digest);
}

bool credential_verifier::verify(std::string_view user, std::string_view password) {
    const config::proxy_user* found = nullptr;
    for (const auto& u : users_)
        if (u.name == user) found = &u;
    // An unknown name is hashed against a real user's setting and then refused.
    const auto& setting = found ? found->password_hash : users_.front().password_hash;
    const auto hashed = hash_with(password, setting);
    const bool ok = found != nullptr && hashed && equal_constant_time(*hashed, found->password_hash);
    if (ok && cache_) {
        auto digest = memo_digest(password);
        std::lock_guard lock(mutex_);
        memos_[found->name] = memo{std::move(digest), clock::now() + *cache_};
    }
    return ok;
}

}  // namespace halfpipe::forward
