// Forward-listener authentication in the config: the users file and the auth keys.
#include <gtest/gtest.h>

#include <crypt.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>

#include "config/config.hpp"
#include "config/users_file.hpp"

namespace halfpipe::config {
namespace {

// SHA-512 crypt of "x", as Python's crypt module or `openssl passwd -6` write it.
const std::string sha512_of_x =
    "$6$5WSkb02jP1RnAMxw$Qm8FxnNpzAKI9soVqvcgQkFQ4XpWzL6gfsbP6ri.mqoRdO6xAz7z4.oThMFr02x4f7zgotUw2kbg6rG4iZ1B10";

std::string message_of(const std::function<void()>& load) {
    try {
        load();
    } catch (const config_error& e) {
        return e.what();
    }
    return "(no error)";
}

// A scratch directory of this process, removed with the fixture.
class scratch_dir : public ::testing::Test {
protected:
    std::filesystem::path dir_ = std::filesystem::temp_directory_path() /
                                 ("halfpipe-auth-test-" + std::to_string(::getpid()));
    void SetUp() override { std::filesystem::create_directories(dir_); }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string write(const std::string& name, const std::string& text) {
        std::ofstream(dir_ / name, std::ios::binary) << text;
        return (dir_ / name).string();
    }
};

std::string forward_listener(const std::string& auth) {
    return "listeners:\n"
           "  - name: egress\n"
           "    mode: connect\n"
           "    bind: 127.0.0.1:3128\n" +
           auth;
}

TEST(users_file, reads_names_and_hashes_skipping_comments_and_blank_lines) {
    const auto users = parse_users("# proxy users\n\nalice:" + sha512_of_x + "\r\n  # bob left\nbob:" + sha512_of_x +
                                       "\n",
                                   "users");
    ASSERT_EQ(users.size(), 2u);
    EXPECT_EQ(users[0].name, "alice");
    EXPECT_EQ(users[0].password_hash, sha512_of_x);
    EXPECT_EQ(users[1].name, "bob");
}

TEST(users_file, every_error_names_the_file_and_line) {
    const auto error = [](const std::string& text) { return message_of([&] { parse_users(text, "users"); }); };
    EXPECT_EQ(error("alice\n"), "users:1: expected name:hash");
    EXPECT_EQ(error("#\n:" + sha512_of_x + "\n"), "users:2: empty user name");
    EXPECT_EQ(error("alice:" + sha512_of_x + "\nalice:" + sha512_of_x + "\n"),
              "users:2: user \"alice\" is listed twice");
    EXPECT_EQ(error("a b:" + sha512_of_x + "\n"), "users:1: user name with white space or a control character");
    EXPECT_EQ(error(std::string(256, 'u') + ":" + sha512_of_x), "users:1: user name longer than 255 bytes");
    EXPECT_EQ(error("# nobody\n"), "users:1: no users (expected lines name:hash)");
    EXPECT_EQ(error(""), "users:1: no users (expected lines name:hash)");
}

TEST(users_file, plain_text_and_weak_hashes_are_refused_without_quoting_them) {
    const auto error = [](const std::string& text) { return message_of([&] { parse_users(text, "users"); }); };
    const auto plain = error("alice:hunter2\n");
    EXPECT_NE(plain.find("users:1: user \"alice\": expected a crypt(3) password hash"), std::string::npos) << plain;
    EXPECT_EQ(plain.find("hunter2"), std::string::npos);
    const auto md5 = error("alice:$1$abcdefgh$0123456789abcdefghijkl\n");
    EXPECT_NE(md5.find("weak method"), std::string::npos) << md5;
    const auto des = error("alice:abJnggxhB/yJU\n");
    EXPECT_NE(des.find("DES hashes are not accepted"), std::string::npos) << des;
    const auto cheap = error("alice:$5$rounds=1000$abcdefgh$XIppta5rT8zJUu4vAOKQXrwq9uY4Ijlz6VjyOmkx5i4\n");
    EXPECT_NE(cheap.find("weak method"), std::string::npos) << cheap;
}

TEST(users_file, hash_password_makes_a_yescrypt_hash_that_verifies) {
    const auto hash = hash_password("correct horse");
    EXPECT_EQ(hash.rfind("$y$", 0), 0u) << hash;
    EXPECT_EQ(crypt_checksalt(hash.c_str()), CRYPT_SALT_OK);
    crypt_data data{};
    EXPECT_EQ(std::string(crypt_rn("correct horse", hash.c_str(), &data, sizeof data)), hash);
    EXPECT_NE(hash_password("correct horse"), hash);  // a fresh salt every time
    EXPECT_EQ(parse_users("alice:" + hash, "users")[0].password_hash, hash);
}

using auth_config_test = scratch_dir;

TEST_F(auth_config_test, loads_the_users_file_relative_to_the_config_file) {
    write("users", "alice:" + sha512_of_x + "\n");
    const auto path = write("halfpipe.yaml", forward_listener("    auth:\n"
                                                              "      users_file: users\n"
                                                              "      realm: corp proxy\n"
                                                              "      cache: off\n"));
    const auto cfg = load_file(path);
    ASSERT_TRUE(cfg.listeners[0].auth);
    const auto& auth = *cfg.listeners[0].auth;
    EXPECT_EQ(auth.users_file, "users");
    EXPECT_EQ(auth.users, (std::vector<proxy_user>{{"alice", sha512_of_x}}));
    EXPECT_EQ(auth.realm, "corp proxy");
    EXPECT_FALSE(auth.cache);
}

TEST_F(auth_config_test, defaults_realm_and_cache) {
    const auto users = write("users", "alice:" + sha512_of_x + "\n");
    const auto cfg = load_string(forward_listener("    auth:\n      users_file: " + users + "\n"));
    const auto& auth = *cfg.listeners[0].auth;
    EXPECT_EQ(auth.realm, "halfpipe");
    EXPECT_EQ(auth.cache, std::optional<duration>(5min));
    EXPECT_FALSE(load_string(forward_listener("")).listeners[0].auth);
}

TEST_F(auth_config_test, errors_name_the_key_and_the_users_file_line) {
    const auto users = write("users", "alice:" + sha512_of_x + "\nbob:plain\n");
    EXPECT_EQ(message_of([&] { load_string(forward_listener("    auth:\n      users_file: " + users + "\n"), "t.yaml"); }),
              "t.yaml:6: listeners[0].auth.users_file: " + users +
                  ":2: user \"bob\": expected a crypt(3) password hash like $y$..., $2b$... or $6$... "
                  "(plain-text passwords and DES hashes are not accepted)");
    const auto missing = (dir_ / "absent").string();
    EXPECT_EQ(message_of([&] { load_string(forward_listener("    auth:\n      users_file: " + missing + "\n"), "t.yaml"); }),
              "t.yaml:6: listeners[0].auth.users_file: " + missing + ": cannot open: No such file or directory");
    EXPECT_EQ(message_of([&] { load_string(forward_listener("    auth:\n      realm: x\n"), "t.yaml"); }),
              "t.yaml:5: listeners[0].auth.users_file: required key is missing");
}

TEST_F(auth_config_test, auth_belongs_to_forward_listeners_with_a_sane_realm) {
    const auto users = write("users", "alice:" + sha512_of_x + "\n");
    const auto reverse = "listeners:\n"
                         "  - name: web\n"
                         "    bind: 127.0.0.1:8080\n"
                         "    upstream:\n"
                         "      address: 127.0.0.1:9000\n"
                         "    auth:\n"
                         "      users_file: " + users + "\n";
    EXPECT_EQ(message_of([&] { load_string(reverse, "t.yaml"); }),
              "t.yaml:6: listeners[0].auth: auth applies to mode connect or socks5 only");
    const auto bad_realm = forward_listener("    auth:\n      users_file: " + users + "\n      realm: \"a\\nb\"\n");
    EXPECT_EQ(message_of([&] { load_string(bad_realm, "t.yaml"); }),
              "t.yaml:7: listeners[0].auth.realm: a realm is a non-empty string without control characters");
}

}  // namespace
}  // namespace halfpipe::config
