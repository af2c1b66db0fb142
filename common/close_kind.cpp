#include "common/close_kind.hpp"

namespace halfpipe {

std::string_view to_string(close_kind kind) noexcept {
    switch (kind) {
        case close_kind::graceful_fin: return "fin";
        case close_kind::immediate: return "close";
        case close_kind::abortive_rst: return "rst";
    }
    return "unknown";
}

std::optional<close_kind> parse_close_kind(std::string_view text) noexcept {
    if (text == "fin") return close_kind::graceful_fin;
    if (text == "close") return close_kind::immediate;
    if (text == "rst") return close_kind::abortive_rst;
    return std::nullopt;
}

}  // namespace halfpipe
