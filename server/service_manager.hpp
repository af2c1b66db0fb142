#pragma once
// The service manager's readiness protocol (sd_notify(3)): one datagram of
// "KEY=value" lines to the socket named by $NOTIFY_SOCKET. systemd documents the
// protocol as stable and meant to be spoken without libsystemd. Without
// $NOTIFY_SOCKET (not under systemd, or Type= other than notify) nothing is sent.
#include <string_view>

namespace halfpipe {

void notify_service_manager(std::string_view state) noexcept;
// True when a service manager takes notices ($NOTIFY_SOCKET is set).
bool service_manager_listens() noexcept;

}  // namespace halfpipe
