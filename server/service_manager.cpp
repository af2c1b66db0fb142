#include "server/service_manager.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace halfpipe {

bool service_manager_listens() noexcept {
    const char* path = std::getenv("NOTIFY_SOCKET");
    return path != nullptr && *path != '\0';
}

void notify_service_manager(std::string_view state) noexcept {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (path == nullptr) return;
    const std::string_view name(path);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    // A path, or '@' for a name in the abstract namespace (where it starts with a NUL).
    if (name.empty() || (name[0] != '/' && name[0] != '@') || name.size() >= sizeof address.sun_path) return;
    std::memcpy(address.sun_path, name.data(), name.size());
    if (name[0] == '@') address.sun_path[0] = '\0';
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    // A lost notice only costs the manager's view of the state: nothing to handle.
    [[maybe_unused]] auto sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                                          reinterpret_cast<const sockaddr*>(&address),
                                          static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size()));
    ::close(fd);
}

}  // namespace halfpipe
