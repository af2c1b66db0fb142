#include "server/forward/connect_failure.hpp"

#include <cerrno>

namespace halfpipe::forward {

connect_failure classify_errno(int err) noexcept {
    switch (err) {
        case ECONNREFUSED: return connect_failure::refused;
        case ENETUNREACH:
        case ENETDOWN: return connect_failure::network_unreachable;
        case EHOSTUNREACH:
        case EHOSTDOWN: return connect_failure::host_unreachable;
        case ETIMEDOUT: return connect_failure::timed_out;
        case EADDRNOTAVAIL: return connect_failure::address_unavailable;
        default: return connect_failure::other;
    }
}

std::string_view to_string(connect_failure failure) noexcept {
    switch (failure) {
        case connect_failure::denied: return "denied";
        case connect_failure::resolve_failed: return "resolve_failed";
        case connect_failure::refused: return "refused";
        case connect_failure::network_unreachable: return "network_unreachable";
        case connect_failure::host_unreachable: return "host_unreachable";
        case connect_failure::timed_out: return "timed_out";
        case connect_failure::address_unavailable: return "address_unavailable";
        case connect_failure::other: return "other";
    }
    return "other";
}

}  // namespace halfpipe::forward
