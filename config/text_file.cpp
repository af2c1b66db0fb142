#include "config/text_file.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "config/config.hpp"

namespace halfpipe::config {

std::string read_text_file(const std::string& path) {
    // An ifstream opens a directory and then reads nothing, which would pass for an
    // empty file.
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw config_error(path + ": cannot read: is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw config_error(path + ": cannot open: " + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw config_error(path + ": cannot read: " + std::strerror(errno));
    return text.str();
}

bool has_control_character(std::string_view text) noexcept {
    for (const unsigned char c : text)
        if (c < 0x20 || c == 0x7f) return true;
    return false;
}

}  // namespace halfpipe::config
