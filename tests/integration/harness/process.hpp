#pragma once
// A child process (normally halfpipe) whose stdout and stderr are captured line by
// line. Every wait is bounded; the destructor kills the child by PID if it still runs.
#include <sys/resource.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace it {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// One captured output line with the time the harness read it.
struct output_line {
    std::string text;
    clock::time_point when;
};

// A line found by a wait: its index, text, capture groups (0 = whole match), arrival.
struct line_match {
    std::size_t index = 0;
    std::string line;
    std::vector<std::string> groups;
    clock::time_point when;
    const std::string& operator[](std::size_t i) const { return groups.at(i); }
};

// Lines appended by the reader thread, waited on by tests. Thread-safe.
class line_buffer {
public:
    void append(const char* data, std::size_t size);
    void close();  // end of output: flushes a last partial line, wakes waiters

    // First line at index >= from matching re (regex_search), waiting up to timeout.
    std::optional<line_match> wait_for(const std::regex& re, clock::duration timeout, std::size_t from = 0);
    // Every line at index >= from matching re, without waiting.
    std::vector<line_match> find_all(const std::regex& re, std::size_t from = 0) const;
    std::vector<output_line> snapshot() const;
    std::size_t size() const;
    std::string text() const;  // every line joined with '\n', for failure messages

private:
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<output_line> lines_;
    std::string partial_;
    bool closed_ = false;
};

struct spawn_options {
    std::optional<rlim_t> nofile;  // RLIMIT_NOFILE for the child, soft and hard
    bool separate_stderr = false;  // stderr to its own buffer instead of mixed with stdout
    std::vector<std::string> env;  // NAME=value, added to the child's environment
};

class process {
public:
    process(const std::string& path, const std::vector<std::string>& args, spawn_options options = {});
    ~process();
    process(const process&) = delete;
    process& operator=(const process&) = delete;

    pid_t pid() const noexcept { return pid_; }

    // Waits for a line matching re (regex_search) among lines with index >= from.
    std::optional<line_match> wait_for_line(const std::regex& re, clock::duration timeout, std::size_t from = 0) {
        return output_.wait_for(re, timeout, from);
    }
    const line_buffer& output() const noexcept { return output_; }
    line_buffer& output() noexcept { return output_; }
    std::string output_text() const { return output_.text(); }
    // With separate_stderr: what the child wrote to stderr (else always empty).
    const line_buffer& error_output() const noexcept { return errors_; }

    void send_signal(int signo);
    bool running();
    // The raw wait status once the child has exited, or nullopt after timeout.
    std::optional<int> wait_exit(clock::duration timeout);
    // Exit code for a normal exit, -signal for death by signal, nullopt while running.
    std::optional<int> exit_code() const;
    // SIGKILL then reap (bounded). Safe to call repeatedly.
    void kill_now();

private:
    void reader_loop();

    pid_t pid_ = -1;
    bool reaped_ = false;
    std::atomic<bool> reaped_flag_{false};  // reaped_, readable by the reader thread
    int status_ = 0;
    int out_fd_ = -1;  // read end of the stdout (+stderr unless separate) pipe
    int err_fd_ = -1;  // read end of the stderr pipe with separate_stderr
    line_buffer output_;
    line_buffer errors_;
    std::thread reader_;
};

// Runs a command to completion (bounded by timeout, killed after it) and returns
// its exit code (or -signal) plus all output. Used for --help, --check and so on.
struct run_result {
    std::optional<int> exit_code;  // nullopt: timed out
    std::string output;  // stdout then stderr
    std::string err;     // stderr alone
};
run_result run_to_exit(const std::string& path, const std::vector<std::string>& args, clock::duration timeout);

// /proc helpers for a live process.
std::size_t count_socket_fds(pid_t pid);
std::size_t count_fds(pid_t pid);
std::size_t count_threads(pid_t pid);
// Thread name → the value of one field of its /proc status file ("Cpus_allowed_list",
// "SigBlk"), leading blanks cut.
std::map<std::string, std::string> status_field_by_thread(pid_t pid, const std::string& field);
// SIGSTOP, then waits (up to 2 s) until every thread has stopped: kill() returns
// before they do. False if they did not.
bool stop_and_wait(pid_t pid);
// CPU time (user + system) of every thread of the process so far, in seconds.
double cpu_seconds(pid_t pid);
std::optional<std::size_t> vm_rss_kib(pid_t pid);

}  // namespace it
