#pragma once
#include <string>
#include <string_view>

namespace halfpipe::config {

// The whole file; throws config_error "<path>: cannot open|read: <why>".
std::string read_text_file(const std::string& path);

// C0 controls and DEL: not allowed in names, realms and other values that reach
// log lines or protocol headers.
bool has_control_character(std::string_view text) noexcept;

}  // namespace halfpipe::config
