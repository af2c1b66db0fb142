// Forward-proxy credentials against crypt(3) hashes, and the cache of verified pairs.
#include <gtest/gtest.h>

#include <thread>

#include "config/users_file.hpp"
#include "server/forward/credential_verifier.hpp"

namespace halfpipe::forward {
namespace {

using namespace std::chrono_literals;

// SHA-512 crypt of "x", as Python's crypt module or `openssl passwd -6` write it.
const std::string sha512_of_x =
    "$6$5WSkb02jP1RnAMxw$Qm8FxnNpzAKI9soVqvcgQkFQ4XpWzL6gfsbP6ri.mqoRdO6xAz7z4.oThMFr02x4f7zgotUw2kbg6rG4iZ1B10";

std::vector<config::proxy_user> users() {
    return {{"alice", config::hash_password("wonderland")}, {"bob", sha512_of_x}};
}

TEST(credential_verifier, accepts_the_right_password_for_each_hash_method) {
    credential_verifier v(users(), std::nullopt);
    EXPECT_TRUE(v.verify("alice", "wonderland"));  // yescrypt
    EXPECT_TRUE(v.verify("bob", "x"));             // SHA-512 crypt from another tool
}

TEST(credential_verifier, refuses_wrong_passwords_unknown_users_and_near_misses) {
    credential_verifier v(users(), std::nullopt);
    EXPECT_FALSE(v.verify("alice", "Wonderland"));
    EXPECT_FALSE(v.verify("alice", "wonderland "));
    EXPECT_FALSE(v.verify("alice", ""));
    EXPECT_FALSE(v.verify("bob", "wonderland"));    // another user's password
    EXPECT_FALSE(v.verify("carol", "wonderland"));  // no such user
    EXPECT_FALSE(v.verify("", "x"));
    EXPECT_FALSE(v.verify("Bob", "x"));
    EXPECT_FALSE(v.verify("bob", std::string_view("x\0y", 3)));  // crypt(3) would stop at the NUL
}

TEST(credential_verifier, remembers_only_a_verified_pair_and_only_when_caching) {
    credential_verifier cached(users(), 5min);
    EXPECT_FALSE(cached.remembered("bob", "x"));  // nothing verified yet
    EXPECT_FALSE(cached.verify("bob", "y"));
    EXPECT_FALSE(cached.remembered("bob", "y"));  // failures are never remembered
    EXPECT_TRUE(cached.verify("bob", "x"));
    EXPECT_TRUE(cached.remembered("bob", "x"));
    EXPECT_FALSE(cached.remembered("bob", "y"));      // a miss, not a verdict: the slow check decides
    EXPECT_FALSE(cached.remembered("alice", "x"));    // per user
    EXPECT_FALSE(cached.remembered("bob", std::string_view("x\0", 2)));

    credential_verifier uncached(users(), std::nullopt);
    EXPECT_TRUE(uncached.verify("bob", "x"));
    EXPECT_FALSE(uncached.remembered("bob", "x"));
}

TEST(credential_verifier, a_remembered_pair_expires) {
    credential_verifier v({{"bob", sha512_of_x}}, 50ms);
    EXPECT_TRUE(v.verify("bob", "x"));
    EXPECT_TRUE(v.remembered("bob", "x"));
    std::this_thread::sleep_for(120ms);
    EXPECT_FALSE(v.remembered("bob", "x"));
}

TEST(credential_verifier, is_safe_to_share_between_threads) {
    credential_verifier v({{"bob", sha512_of_x}}, 5min);
    std::atomic<int> accepted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 20; ++i)
                if (v.remembered("bob", "x") || v.verify("bob", "x")) ++accepted;
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(accepted.load(), 80);
}

}  // namespace
}  // namespace halfpipe::forward
