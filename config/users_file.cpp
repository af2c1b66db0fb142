#include "config/users_file.hpp"

#include <crypt.h>

#include "config/text_file.hpp"

namespace halfpipe::config {
namespace {

[[noreturn]] void fail(const std::string& source, int line, const std::string& message) {
    throw config_error(source + ":" + std::to_string(line) + ": " + message);
}

// A hash libcrypt would not verify, or one of its legacy methods (DES, MD5,
// low-round SHA-crypt) that offline guessing breaks quickly, is refused at load
// rather than failing every login later.
void check_hash(const std::string& hash, const std::string& source, int line, const std::string& user) {
    // Every method worth having starts with "$"; the rest is DES or a pasted password.
    const int verdict = hash.starts_with('$') ? crypt_checksalt(hash.c_str()) : CRYPT_SALT_INVALID;
    switch (verdict) {
        case CRYPT_SALT_OK:
            return;
        case CRYPT_SALT_METHOD_LEGACY:
        case CRYPT_SALT_TOO_CHEAP:
            fail(source, line,
                 "user \"" + user + "\": the password hash uses a weak method; use yescrypt ($y$), bcrypt ($2b$) or "
                 "SHA-512 crypt ($6$), e.g. from `halfpipe --hash-password`");
        default:
            fail(source, line,
                 "user \"" + user + "\": expected a crypt(3) password hash like $y$..., $2b$... or $6$... "
                 "(plain-text passwords and DES hashes are not accepted)");
    }
}

}  // namespace

std::vector<proxy_user> parse_users(std::string_view text, const std::string& source) {
    std::vector<proxy_user> users;
    int line_number = 0;
    while (!text.empty()) {
        ++line_number;
        const auto end = text.find('\n');
        std::string_view line = text.substr(0, end);
        text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        const auto first = line.find_first_not_of(" \t");
        if (first == std::string_view::npos || line[first] == '#') continue;

        const auto colon = line.find(':');
        if (colon == std::string_view::npos) fail(source, line_number, "expected name:hash");
        proxy_user user{std::string(line.substr(0, colon)), std::string(line.substr(colon + 1))};
        if (user.name.empty()) fail(source, line_number, "empty user name");
        if (user.name.size() > max_user_name)
            fail(source, line_number, "user name longer than " + std::to_string(max_user_name) + " bytes");
        if (has_control_character(user.name) || user.name.find_first_of(" \t") != std::string::npos)
            fail(source, line_number, "user name with white space or a control character");
        for (const auto& earlier : users)
            if (earlier.name == user.name) fail(source, line_number, "user \"" + user.name + "\" is listed twice");
        check_hash(user.password_hash, source, line_number, user.name);
        users.push_back(std::move(user));
    }
    if (users.empty()) fail(source, line_number == 0 ? 1 : line_number, "no users (expected lines name:hash)");
    return users;
}

std::string hash_password(std::string_view password) {
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    // Null prefix and random buffer: the preferred method, its default cost, kernel entropy.
    if (crypt_gensalt_rn(nullptr, 0, nullptr, 0, setting, sizeof setting) == nullptr)
        throw config_error("cannot make a password hash: crypt_gensalt failed");
    const std::string phrase(password);
    crypt_data data{};
    const char* hash = crypt_rn(phrase.c_str(), setting, &data, sizeof data);
    if (hash == nullptr || hash[0] == '*') throw config_error("cannot make a password hash: crypt failed");
    return hash;
}

std::vector<proxy_user> read_users_file(const std::string& path) { return parse_users(read_text_file(path), path); }

}  // namespace halfpipe::config
