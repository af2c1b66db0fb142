#pragma once
#include <optional>
#include <string_view>

namespace halfpipe {

// How halfpipe ends one socket. Every close in the code base names one of these,
// so that an operator can tell from the config and the logs what the peer saw.
enum class close_kind {
    graceful_fin,  // shutdown(send) then close: the peer reads EOF after every byte
    immediate,     // plain close(): FIN, unless unread input makes the kernel send RST
    abortive_rst,  // SO_LINGER {1,0} then close: the peer reads ECONNRESET, no TIME_WAIT here
};

std::string_view to_string(close_kind kind) noexcept;
std::optional<close_kind> parse_close_kind(std::string_view text) noexcept;

}  // namespace halfpipe
