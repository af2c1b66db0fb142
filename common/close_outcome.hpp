#pragma once
#include <optional>
#include <string_view>

namespace halfpipe {

// Who ended a connection first, and how: the vocabulary of the access log and of
// the close counters, so the two always agree.
enum class initiator { client, upstream, proxy };
enum class close_how { fin, rst, timeout, error, limit };

constexpr std::string_view to_string(initiator who) noexcept {
    switch (who) {
        case initiator::client: return "client";
        case initiator::upstream: return "upstream";
        case initiator::proxy: return "proxy";
    }
    return "unknown";
}

constexpr std::string_view to_string(close_how how) noexcept {
    switch (how) {
        case close_how::fin: return "fin";
        case close_how::rst: return "rst";
        case close_how::timeout: return "timeout";
        case close_how::error: return "error";
        case close_how::limit: return "limit";
    }
    return "unknown";
}

struct close_outcome {
    initiator who = initiator::proxy;
    close_how how = close_how::error;
    std::string_view reason = "unknown";  // always a string literal: idle_timeout, client_reset, ...
};

// What a connection's record says after `next` happened: the first end wins, except
// that a reset, timeout or error after a FIN is what really ended the connection.
constexpr close_outcome merge(const std::optional<close_outcome>& recorded, const close_outcome& next) noexcept {
    if (!recorded || (recorded->how == close_how::fin && next.how != close_how::fin)) return next;
    return *recorded;
}

}  // namespace halfpipe
