#include "server/reload.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <system_error>
#include <utility>

#include "common/log.hpp"
#include "server/service_manager.hpp"

namespace halfpipe {

namespace {
using namespace std::chrono_literals;
// A successor that has not bound its listeners by then is stuck: it gets SIGTERM.
constexpr auto reload_timeout = 30s;
}  // namespace

reload_control::reload_control(net::io_context& control, std::vector<std::string> command,
                               std::function<void()> handed_over, std::function<void()> lost)
    : control_(control),
      command_(std::move(command)),
      handed_over_(std::move(handed_over)),
      lost_(std::move(lost)),
      child_signals_(control, SIGCHLD) {
    watch_children();
}

void reload_control::watch_children() {
    child_signals_.async_wait([this](const boost::system::error_code& ec, int) {
        if (ec) return;
        reap_stopped();
        watch_children();
    });
}

void reload_control::reap_stopped() {
    std::erase_if(stopped_, [](pid_t pid) {
        int status = 0;
        const pid_t reaped = ::waitpid(pid, &status, WNOHANG);
        if (reaped == 0) return false;
        if (reaped == pid) log::get().info("event=successor_reaped successor_pid={}", pid);
        return true;  // reaped, or no child of ours any more
    });
}

void reload_control::request() {
    if (next_) {
        pending_ = true;
        log::get().info("event=reload_queued reason=reload_in_progress");
        return;
    }
    // The successor has another PID. Only a service manager told of it follows
    // (systemd Type=notify); a supervisor that watches this PID would start a second
    // copy beside the orphaned successor, and a container's init would end the
    // container with this process.
    if (!service_manager_listens()) {
        log::get().warn("event=reload_refused reason=no_service_manager hint=\"SIGHUP reloads under systemd "
                        "(Type=notify); elsewhere start a new halfpipe beside this one, then SIGTERM this one\"");
        return;
    }
    start();
}

void reload_control::start() {
    notify_service_manager("RELOADING=1");
    try {
        next_.emplace(control_, command_);
    } catch (const std::system_error& e) {
        log::get().error("event=reload_failed error=\"{}\"", e.what());
        notify_service_manager("READY=1");  // still the one serving
        return;
    }
    log::get().info("event=reload_started successor_pid={}", next_->pid());
    next_->async_wait_ready(reload_timeout, [this](bool ready, const std::string& why) { on_outcome(ready, why); });
}

void reload_control::on_outcome(bool ready, const std::string& why) {
    const pid_t pid = next_->pid();
    if (ready) {
        // Told before this process may exit: the manager must never see its main
        // process gone without knowing the next one.
        notify_service_manager("MAINPID=" + std::to_string(pid) + "\nREADY=1");
        log::get().info("event=reload_handover successor_pid={}", pid);
        const bool watched = next_->async_wait_exit([this, pid](bool clean, const std::string& how) {
            if (clean) {
                // Told to stop (systemctl stop signals the main process only), it drained.
                log::get().info("event=successor_exited successor_pid={} how=\"{}\"", pid, how);
                return;
            }
            log::get().error("event=successor_lost successor_pid={} how=\"{}\"", pid, how);
            notify_service_manager("MAINPID=" + std::to_string(::getpid()) + "\nREADY=1");
            net::post(control_, [this] {
                next_.reset();
                lost_();
            });
        });
        if (!watched) log::get().warn("event=successor_unwatched successor_pid={} reason=no_pidfd", pid);
        handed_over_();
        if (std::exchange(pending_, false)) {
            log::get().info("event=reload_passed_on successor_pid={}", pid);
            ::kill(pid, SIGHUP);
        }
        return;
    }
    log::get().error("event=reload_failed successor_pid={} reason=\"{}\"", pid, why);
    notify_service_manager("READY=1");  // still the one serving
    if (!next_->reaped()) {
        stopped_.push_back(pid);
        reap_stopped();  // it may have exited before it was on the list
    }
    // Not from inside the successor's own handler.
    net::post(control_, [this] {
        next_.reset();
        if (std::exchange(pending_, false)) start();
    });
}

}  // namespace halfpipe
