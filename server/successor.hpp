#pragma once
// Reload by handover: on SIGHUP halfpipe starts this executable again with the same
// arguments, so the successor reads the config (and runs the binary) as they are now
// on disk. The successor binds the same ports beside this process (SO_REUSEPORT) and
// says when it listens through a pipe named by $HALFPIPE_READY_FD; only then does
// this process drain and exit, as on SIGTERM. A successor that fails (a bad config)
// is reaped, one that stays silent is told to stop, and this process goes on serving.
#include <sys/types.h>

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/net.hpp"

namespace halfpipe {

// The executable (its path as this process was started by, made absolute now, before
// the working directory could matter) and the arguments this process was started with.
std::vector<std::string> restart_command(int argc, char** argv);

// In a successor: the write end of the pipe to its predecessor, taken out of the
// environment (call it before any thread starts: the environment is not thread-safe).
std::optional<int> take_ready_fd();
// Tells the predecessor this process listens, and closes the pipe.
void announce_ready(int ready_fd) noexcept;

class successor {
public:
    using on_outcome = std::function<void(bool ready, const std::string& why)>;

    // Starts the successor; throws std::system_error when it cannot.
    successor(net::io_context& control, const std::vector<std::string>& command);
    // One that never said it listens is told to stop (SIGTERM); one that did lives on.
    ~successor();
    successor(const successor&) = delete;
    successor& operator=(const successor&) = delete;

    pid_t pid() const noexcept { return pid_; }
    bool reaped() const noexcept { return reaped_; }

    // done(true) once it listens; done(false, why) when it exits first or stays silent
    // for `timeout` (then it gets SIGTERM). Either way done is the last thing that runs
    // here, so it may destroy this object.
    void async_wait_ready(std::chrono::steady_clock::duration timeout, on_outcome done);

    // After it said it listens: done(clean, how) once it has exited and been reaped,
    // clean when it exited with status 0 (it was told to stop, and drained). done is
    // the last thing that runs here. False when the kernel has no pidfd to watch it by.
    bool async_wait_exit(std::function<void(bool clean, const std::string& how)> done);

private:
    void give_up(const std::string& why);

    pid_t pid_ = -1;
    bool ready_ = false;
    bool reaped_ = false;
    bool told_to_stop_ = false;  // sent SIGTERM already
    bool decided_ = false;  // done_ has been called
    // Handlers hold it weakly: one may still be queued after done_ destroyed this object.
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);
    net::posix::stream_descriptor pipe_;
    net::posix::stream_descriptor exit_watch_;  // a pidfd: readable once it has exited
    net::steady_timer deadline_;
    std::array<char, 16> message_{};
    on_outcome done_;
};

}  // namespace halfpipe
