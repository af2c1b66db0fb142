#pragma once
// What SIGHUP does (README "Reload"): one successor at a time, started only where a
// service manager follows the new PID; the service manager is told RELOADING=1, then
// MAINPID= and READY=1 once the successor listens (before this process may exit), or
// READY=1 again when it failed. A SIGHUP during a reload may follow an edit the
// successor did not read: it is queued, and runs once that reload is over (passed on
// to the successor after a handover, or run here again after a failure).
#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/net.hpp"
#include "server/successor.hpp"

namespace halfpipe {

class reload_control {
public:
    // handed_over: the successor listens, and systemd knows it; this process must drain.
    // lost: a successor that took over has died (crashed, killed) while this process
    // still runs: nothing listens unless this process listens again, and systemd,
    // which cannot see a process that is not its child end, would never restart the
    // service while this one lives. The service manager has been told that this
    // process is the main one again.
    reload_control(net::io_context& control, std::vector<std::string> command, std::function<void()> handed_over,
                   std::function<void()> lost);

    void request();  // a SIGHUP while serving
    // A stop while a successor starts: it would outlive us, so it is told to stop too.
    void cancel() { next_.reset(); }

private:
    void start();
    void on_outcome(bool ready, const std::string& why);
    void watch_children();
    void reap_stopped();

    net::io_context& control_;
    std::vector<std::string> command_;
    std::function<void()> handed_over_;
    std::function<void()> lost_;
    std::optional<successor> next_;
    bool pending_ = false;
    // Successors told to stop that had not exited yet: reaped as they exit (SIGCHLD),
    // not left as zombies until this process exits.
    std::vector<pid_t> stopped_;
    net::signal_set child_signals_;
};

}  // namespace halfpipe
