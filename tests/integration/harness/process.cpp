#include "harness/process.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

namespace it {

// ---- line_buffer ----------------------------------------------------------

void line_buffer::append(const char* data, std::size_t size) {
    std::lock_guard lock(mutex_);
    partial_.append(data, size);
    std::size_t start = 0;
    bool added = false;
    for (std::size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
        std::string line = partial_.substr(start, nl - start);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines_.push_back({std::move(line), clock::now()});
        added = true;
    }
    partial_.erase(0, start);
    if (added) changed_.notify_all();
}

void line_buffer::close() {
    std::lock_guard lock(mutex_);
    if (!partial_.empty()) {
        lines_.push_back({std::move(partial_), clock::now()});
        partial_.clear();
    }
    closed_ = true;
    changed_.notify_all();
}

namespace {
std::optional<line_match> match_line(const output_line& l, std::size_t index, const std::regex& re) {
    std::smatch m;
    if (!std::regex_search(l.text, m, re)) return std::nullopt;
    line_match found;
    found.index = index;
    found.line = l.text;
    found.when = l.when;
    for (const auto& g : m) found.groups.push_back(g.str());
    return found;
}
}  // namespace

std::optional<line_match> line_buffer::wait_for(const std::regex& re, clock::duration timeout, std::size_t from) {
    const auto deadline = clock::now() + timeout;
    std::unique_lock lock(mutex_);
    std::size_t next = from;
    for (;;) {
        for (; next < lines_.size(); ++next) {
            if (auto found = match_line(lines_[next], next, re)) return found;
        }
        if (closed_) return std::nullopt;
        if (clock::now() >= deadline) return std::nullopt;
        changed_.wait_until(lock, deadline);
    }
}

std::vector<line_match> line_buffer::find_all(const std::regex& re, std::size_t from) const {
    std::lock_guard lock(mutex_);
    std::vector<line_match> all;
    for (std::size_t i = from; i < lines_.size(); ++i) {
        if (auto found = match_line(lines_[i], i, re)) all.push_back(std::move(*found));
    }
    return all;
}

std::vector<output_line> line_buffer::snapshot() const {
    std::lock_guard lock(mutex_);
    return lines_;
}

std::size_t line_buffer::size() const {
    std::lock_guard lock(mutex_);
    return lines_.size();
}

std::string line_buffer::text() const {
    std::lock_guard lock(mutex_);
    std::string all;
    for (const auto& l : lines_) {
        all += l.text;
        all += '\n';
    }
    if (!partial_.empty()) all += partial_;
    return all;
}

// ---- process --------------------------------------------------------------

namespace {

[[noreturn]] void child_fail(const char* what) {
    // Only async-signal-safe calls here: we are between fork and exec.
    const char prefix[] = "halfpipe test harness: exec failed: ";
    (void)!::write(2, prefix, sizeof prefix - 1);
    (void)!::write(2, what, std::strlen(what));
    (void)!::write(2, "\n", 1);
    ::_exit(127);
}

}  // namespace

process::process(const std::string& path, const std::vector<std::string>& args, spawn_options options) {
    std::vector<std::string> storage;
    storage.reserve(args.size() + 1);
    storage.push_back(path);
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : storage) argv.push_back(s.data());
    argv.push_back(nullptr);

    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
    int err_fds[2] = {-1, -1};
    if (options.separate_stderr && ::pipe2(err_fds, O_CLOEXEC) != 0) {
        const int err = errno;
        ::close(fds[0]);
        ::close(fds[1]);
        throw std::system_error(err, std::generic_category(), "pipe2");
    }
    const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0) {
        ::close(fds[0]);
        ::close(fds[1]);
        throw std::system_error(errno, std::generic_category(), "open /dev/null");
    }
    const pid_t parent = ::getpid();

    const pid_t pid = ::fork();
    if (pid < 0) {
        const int err = errno;
        ::close(fds[0]);
        ::close(fds[1]);
        if (err_fds[0] >= 0) {
            ::close(err_fds[0]);
            ::close(err_fds[1]);
        }
        ::close(devnull);
        throw std::system_error(err, std::generic_category(), "fork");
    }
    if (pid == 0) {
        // Child. Die with the test process, whatever happens to it.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(126);
        if (::dup2(devnull, 0) < 0 || ::dup2(fds[1], 1) < 0 || ::dup2(err_fds[1] >= 0 ? err_fds[1] : fds[1], 2) < 0)
            child_fail("dup2");
        // The test process ignores SIGPIPE; the child starts with default dispositions.
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        for (int s : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT}) ::sigaction(s, &dfl, nullptr);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        if (options.nofile) {
            struct rlimit rl {*options.nofile, *options.nofile};
            if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) child_fail("setrlimit");
        }
        // No descriptor of the test process (its sockets!) may leak into the child.
        if (::syscall(SYS_close_range, 3u, ~0u, 0u) != 0) {
            for (int fd = 3; fd < 65536; ++fd) ::close(fd);
        }
        for (const auto& entry : options.env)
            if (::putenv(const_cast<char*>(entry.c_str())) != 0) child_fail("putenv");
        ::execv(argv[0], argv.data());
        child_fail(argv[0]);
    }
    ::close(fds[1]);
    if (err_fds[1] >= 0) ::close(err_fds[1]);
    ::close(devnull);
    pid_ = pid;
    out_fd_ = fds[0];
    err_fd_ = err_fds[0];
    reader_ = std::thread([this] { reader_loop(); });
}

process::~process() {
    kill_now();
    if (reader_.joinable()) reader_.join();
    if (out_fd_ >= 0) ::close(out_fd_);
    if (err_fd_ >= 0) ::close(err_fd_);
}

void process::reader_loop() {
    char buf[8192];
    // Bounded even if something else keeps a pipe open: once the child is reaped and
    // the pipes have been quiet for a while, stop.
    auto quiet_since = clock::now();
    bool out_open = true;
    bool err_open = err_fd_ >= 0;
    while (out_open || err_open) {
        pollfd p[2] = {{out_open ? out_fd_ : -1, POLLIN, 0}, {err_open ? err_fd_ : -1, POLLIN, 0}};
        const int r = ::poll(p, 2, 50);
        if (r < 0 && errno == EINTR) continue;
        if (r > 0) {
            for (int i = 0; i < 2; ++i) {
                if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                const ssize_t n = ::read(p[i].fd, buf, sizeof buf);
                if (n > 0) {
                    (i == 0 ? output_ : errors_).append(buf, static_cast<std::size_t>(n));
                    quiet_since = clock::now();
                } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                    (i == 0 ? out_open : err_open) = false;
                }
            }
            continue;
        }
        if (reaped_flag_.load() && clock::now() - quiet_since > 200ms) break;
    }
    errors_.close();
    output_.close();
}

void process::send_signal(int signo) {
    if (pid_ > 0 && !reaped_) ::kill(pid_, signo);
}

bool process::running() {
    if (reaped_) return false;
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
        reaped_ = true;
        status_ = status;
        reaped_flag_.store(true);
        return false;
    }
    return true;
}

std::optional<int> process::wait_exit(clock::duration timeout) {
    const auto deadline = clock::now() + timeout;
    while (running()) {
        if (clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(5ms);
    }
    return status_;
}

std::optional<int> process::exit_code() const {
    if (!reaped_) return std::nullopt;
    if (WIFEXITED(status_)) return WEXITSTATUS(status_);
    if (WIFSIGNALED(status_)) return -WTERMSIG(status_);
    return std::nullopt;
}

void process::kill_now() {
    if (pid_ <= 0 || reaped_) return;
    if (running()) {
        ::kill(pid_, SIGKILL);
        // SIGKILL cannot be ignored; the bound only guards against a stuck kernel.
        wait_exit(10s);
    }
}

run_result run_to_exit(const std::string& path, const std::vector<std::string>& args, clock::duration timeout) {
    process p(path, args, spawn_options{.separate_stderr = true});
    run_result result;
    if (p.wait_exit(timeout)) {
        result.exit_code = p.exit_code();
    } else {
        p.kill_now();
    }
    // Let the reader collect the rest of the output (the pipe closes on exit).
    p.wait_for_line(std::regex("a^"), 300ms);
    result.err = p.error_output().text();
    result.output = p.output_text() + result.err;
    return result;
}

// ---- /proc helpers -----------------------------------------------------------

namespace {
template <typename Pred>
std::size_t count_dir(const std::string& dir, Pred pred) {
    std::size_t n = 0;
    DIR* d = ::opendir(dir.c_str());
    if (!d) return 0;
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        if (pred(dir + "/" + e->d_name)) ++n;
    }
    ::closedir(d);
    return n;
}
}  // namespace

std::size_t count_socket_fds(pid_t pid) {
    return count_dir("/proc/" + std::to_string(pid) + "/fd", [](const std::string& p) {
        char target[256];
        const ssize_t n = ::readlink(p.c_str(), target, sizeof target - 1);
        if (n <= 0) return false;
        target[n] = '\0';
        return std::strncmp(target, "socket:", 7) == 0;
    });
}

std::size_t count_fds(pid_t pid) {
    return count_dir("/proc/" + std::to_string(pid) + "/fd", [](const std::string&) { return true; });
}

std::size_t count_threads(pid_t pid) {
    return count_dir("/proc/" + std::to_string(pid) + "/task", [](const std::string&) { return true; });
}

std::map<std::string, std::string> status_field_by_thread(pid_t pid, const std::string& field) {
    std::map<std::string, std::string> out;
    const std::string prefix = field + ":";
    const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
    DIR* dir = ::opendir(tasks.c_str());
    if (!dir) return out;
    while (const dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        const std::string task = tasks + "/" + entry->d_name;
        std::ifstream comm(task + "/comm"), status(task + "/status");
        std::string name, line;
        std::getline(comm, name);
        while (std::getline(status, line))
            if (line.rfind(prefix, 0) == 0) {
                const auto start = line.find_first_not_of(" \t", prefix.size());
                out[name] = start == std::string::npos ? "" : line.substr(start);
            }
    }
    ::closedir(dir);
    return out;
}

namespace {
// The fields of a /proc/.../stat file from the state (field 3) on. The command name
// before them may hold spaces: they start after its closing parenthesis.
std::vector<std::string> stat_fields(const std::string& path) {
    std::ifstream in(path);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> fields;
    const auto paren = text.rfind(')');
    if (paren == std::string::npos) return fields;
    std::istringstream rest(text.substr(paren + 1));
    for (std::string field; rest >> field;) fields.push_back(field);
    return fields;
}
}  // namespace

bool stop_and_wait(pid_t pid) {
    if (::kill(pid, SIGSTOP) != 0) return false;
    auto not_stopped = [](const std::string& task) {
        const auto fields = stat_fields(task + "/stat");
        return fields.empty() || fields[0] != "T";
    };
    const auto deadline = clock::now() + 2s;
    while (clock::now() < deadline) {
        if (count_dir("/proc/" + std::to_string(pid) + "/task", not_stopped) == 0) return true;
        std::this_thread::sleep_for(1ms);
    }
    return false;
}

double cpu_seconds(pid_t pid) {
    const auto fields = stat_fields("/proc/" + std::to_string(pid) + "/stat");
    if (fields.size() < 13) return 0;
    const auto ticks = std::stoull(fields[11]) + std::stoull(fields[12]);  // utime, stime: fields 14 and 15
    return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::optional<std::size_t> vm_rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string key;
    while (in >> key) {
        if (key == "VmRSS:") {
            std::size_t kib = 0;
            in >> kib;
            return kib;
        }
        std::string rest;
        std::getline(in, rest);
    }
    return std::nullopt;
}

}  // namespace it
