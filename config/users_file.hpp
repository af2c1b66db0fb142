#pragma once
// The users file of an authenticating forward listener: one "name:crypt-hash" per
// line, '#' comments and blank lines ignored. Only hashes are accepted, never plain
// passwords; `halfpipe --hash-password` (or mkpasswd, openssl passwd -6) makes them.
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace halfpipe::config {

// Throws config_error "<source>:<line>: <message>"; the message never quotes a hash.
std::vector<proxy_user> parse_users(std::string_view text, const std::string& source);
std::vector<proxy_user> read_users_file(const std::string& path);

// A hash for a users file with libcrypt's preferred method (yescrypt on Debian 12)
// and a fresh salt; throws config_error if libcrypt cannot make one.
std::string hash_password(std::string_view password);

// RFC 1929 carries a user name in at most 255 bytes; Basic credentials end it at ':'.
inline constexpr std::size_t max_user_name = 255;

}  // namespace halfpipe::config
