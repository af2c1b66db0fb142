#include "server/successor.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <thread>

extern char** environ;

namespace halfpipe {

namespace {

constexpr std::string_view ready_fd_variable = "HALFPIPE_READY_FD";
constexpr std::string_view ready_message = "ready\n";
// Where the successor finds the pipe's write end.
constexpr int successor_ready_fd = 3;
// How long a successor that closed the pipe may take to exit before it counts as alive.
using namespace std::chrono_literals;
constexpr auto exit_wait = 1000ms;
constexpr auto exit_poll = 10ms;

std::string exit_text(int status) {
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
    return "ended";
}

}  // namespace

// The executable as it was named at start, made absolute but with its symlinks kept:
// an upgrade that turns a link to the new version is picked up. /proc/self/exe would
// name the file the link pointed to then.
std::string executable_path(const char* argv0) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const std::string_view name(argv0 != nullptr ? argv0 : "");
    if (name.find('/') != std::string_view::npos) {
        auto path = fs::absolute(fs::path(name), ec);
        if (!ec) return path.string();
    } else if (const char* search = std::getenv("PATH"); search != nullptr && !name.empty()) {
        std::string_view dirs(search);
        while (true) {
            const auto colon = dirs.find(':');
            const auto dir = dirs.substr(0, colon);
            auto candidate = fs::absolute(fs::path(dir.empty() ? "." : dir) / fs::path(name), ec);
            if (!ec && ::access(candidate.c_str(), X_OK) == 0) return candidate.string();
            if (colon == std::string_view::npos) break;
            dirs.remove_prefix(colon + 1);
        }
    }
    auto self = fs::read_symlink("/proc/self/exe", ec);
    return ec ? std::string(name) : self.string();
}

std::vector<std::string> restart_command(int argc, char** argv) {
    std::vector<std::string> command{executable_path(argc > 0 ? argv[0] : nullptr)};
    for (int i = 1; i < argc; ++i) command.emplace_back(argv[i]);
    return command;
}

std::optional<int> take_ready_fd() {
    const char* text = std::getenv(std::string(ready_fd_variable).c_str());
    if (text == nullptr) return std::nullopt;
    int fd = -1;
    const std::string_view value(text);
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), fd);
    ::unsetenv(std::string(ready_fd_variable).c_str());
    // Not ours to write to unless it really is a pipe left open for us.
    if (ec != std::errc() || end != value.data() + value.size() || fd < 3 || ::fcntl(fd, F_GETFD) < 0)
        return std::nullopt;
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);  // not for this process's own successor
    return fd;
}

void announce_ready(int ready_fd) noexcept {
    // The predecessor may have given up meanwhile; then there is nobody to tell.
    [[maybe_unused]] auto written = ::write(ready_fd, ready_message.data(), ready_message.size());
    ::close(ready_fd);
}

successor::successor(net::io_context& control, const std::vector<std::string>& command)
    : pipe_(control), exit_watch_(control), deadline_(control) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
    const int read_end = fds[0];
    const int write_end = fds[1];

    std::vector<std::string> environment;
    for (char** e = environ; *e != nullptr; ++e)
        if (!std::string_view(*e).starts_with(std::string(ready_fd_variable) + "=")) environment.emplace_back(*e);
    environment.push_back(std::string(ready_fd_variable) + "=" + std::to_string(successor_ready_fd));
    std::vector<char*> envp;
    for (auto& e : environment) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> args(command);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    // Asio opens sockets without close-on-exec: every descriptor but the pipe's is closed
    // in the successor, or it would hold this process's connections open (no FIN would
    // leave when this process closes them) and its listeners.
    posix_spawn_file_actions_adddup2(&actions, write_end, successor_ready_fd);
    posix_spawn_file_actions_addclosefrom_np(&actions, successor_ready_fd + 1);
    const int error = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ::close(write_end);  // the successor holds the only one: its exit reads as EOF here
    if (error != 0) {
        ::close(read_end);
        throw std::system_error(error, std::generic_category(), "posix_spawn " + command.front());
    }
    pipe_.assign(read_end);
}

// SIGTERM, not SIGKILL: a successor that has not said it listens may accept already
// (its workers start first), and drains what it took. It is reaped when it has exited
// by then; otherwise it stays a zombie until this process exits, which is soon (a stop)
// or rare (a successor that never answered).
successor::~successor() {
    // Once only: a second SIGTERM would make it reset what it drains.
    if (!ready_ && !reaped_ && !told_to_stop_) {
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, WNOHANG);
    }
}

void successor::give_up(const std::string& why) {
    decided_ = true;
    deadline_.cancel();
    boost::system::error_code ignored;
    pipe_.close(ignored);
    int status = 0;
    std::string outcome = why;
    if (why == "timeout") {
        ::kill(pid_, SIGTERM);  // it drains whatever it accepted meanwhile
        told_to_stop_ = true;
        reaped_ = ::waitpid(pid_, &status, WNOHANG) == pid_;
    } else {
        // After EOF the successor has exited, or is about to: it held the pipe's only
        // write end. One that closed the pipe and lives on (a wrapper that closes
        // descriptors, say) is told to stop; it must not hold this thread. ECHILD
        // (SIGCHLD ignored: reaped by the kernel) counts as reaped too, so that no
        // stale PID is ever signalled.
        pid_t reaped = 0;
        for (auto waited = 0ms; (reaped = ::waitpid(pid_, &status, WNOHANG)) == 0 && waited < exit_wait;
             waited += exit_poll)
            std::this_thread::sleep_for(exit_poll);
        reaped_ = reaped == pid_ || (reaped < 0 && errno == ECHILD);
        if (reaped == pid_) outcome = exit_text(status);
        if (reaped == 0) {
            ::kill(pid_, SIGTERM);
            told_to_stop_ = true;
            outcome = "closed the pipe without saying it listens";
        }
    }
    auto done = std::move(done_);
    done(false, outcome);
}

void successor::async_wait_ready(std::chrono::steady_clock::duration timeout, on_outcome done) {
    done_ = std::move(done);
    deadline_.expires_after(timeout);
    deadline_.async_wait([this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
        if (alive.expired() || ec || decided_) return;
        give_up("timeout");
    });
    net::async_read(pipe_, net::buffer(message_, ready_message.size()),
                    [this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec, std::size_t n) {
                        if (alive.expired() || decided_) return;
                        if (ec || std::string_view(message_.data(), n) != ready_message) {
                            give_up("exited");
                            return;
                        }
                        decided_ = true;
                        ready_ = true;
                        deadline_.cancel();
                        boost::system::error_code ignored;
                        pipe_.close(ignored);
                        auto done_now = std::move(done_);
                        done_now(true, "");
                    });
}

bool successor::async_wait_exit(std::function<void(bool clean, const std::string& how)> done) {
    // A child is never reaped behind our back, so its PID cannot be reused before the
    // pidfd refers to it.
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (fd < 0) return false;
    exit_watch_.assign(fd);
    exit_watch_.async_wait(net::posix::descriptor_base::wait_read,
                           [this, alive = std::weak_ptr<int>(alive_), done = std::move(done)](
                               const boost::system::error_code& ec) {
                               if (alive.expired() || ec) return;
                               int status = 0;
                               if (::waitpid(pid_, &status, WNOHANG) == pid_) reaped_ = true;
                               const bool clean = reaped_ && WIFEXITED(status) && WEXITSTATUS(status) == 0;
                               done(clean, reaped_ ? exit_text(status) : "ended");
                           });
    return true;
}

}  // namespace halfpipe
