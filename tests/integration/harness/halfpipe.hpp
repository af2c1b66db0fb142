#pragma once
// Starts the real halfpipe binary and reads what the tests need from its log:
// the bound port (event=listening) and access log lines (event=access).
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "harness/process.hpp"
#include "harness/sockets.hpp"

namespace it {

// Path of the binary under test: $HALFPIPE_TEST_BINARY if set, else the compile
// definition HALFPIPE_BINARY set by CMake.
const std::string& halfpipe_binary();

// logfmt: key=value key="quoted value" ... → map. Keys without '=' map to "".
std::map<std::string, std::string> parse_logfmt(const std::string& line);

// One access log line, parsed.
struct access_entry {
    std::map<std::string, std::string> fields;
    std::string line;
    std::string get(const std::string& key) const;  // "" when absent
    bool has(const std::string& key) const { return fields.count(key) != 0; }
    long long number(const std::string& key) const;  // -1 when absent or not a number
};

struct halfpipe_options {
    std::string listen = "127.0.0.1:0";
    std::string upstream;                // required
    std::vector<std::string> extra;      // more flags, e.g. {"--idle-timeout", "1s"}
    bool admin_off = true;               // adds --admin off
    std::optional<rlim_t> nofile;        // RLIMIT_NOFILE for the child
    std::vector<std::string> env;        // NAME=value, added to the child's environment
    clock::duration startup_timeout = 10s;
};

class halfpipe {
public:
    // Starts halfpipe and waits for its event=listening line. Throws with the
    // captured output if it does not come.
    explicit halfpipe(halfpipe_options options);
    // Starts halfpipe with exactly these arguments (no listening wait).
    halfpipe(const std::vector<std::string>& args, spawn_options spawn);

    // Waits for the first event=listening line and takes port() and listen_host()
    // from it. Throws with the captured output if it does not come.
    void wait_listening(clock::duration timeout = 10s);

    process& proc() noexcept { return *proc_; }
    pid_t pid() const noexcept { return proc_->pid(); }
    std::uint16_t port() const noexcept { return port_; }
    const std::vector<std::string>& listen_addresses() const noexcept { return addresses_; }
    const std::string& listen_host() const noexcept { return host_; }

    // Connects a client to the proxy.
    socket_fd connect(clock::duration timeout = 2s, int* err = nullptr) const;

    // Waits for the next access line not yet returned by this function.
    std::optional<access_entry> next_access(clock::duration timeout = 5s);
    // Waits for the next access line whose `client` field is the given port.
    std::optional<access_entry> access_for_client_port(std::uint16_t client_port, clock::duration timeout = 5s);
    std::vector<access_entry> all_access() const;

    // Waits for a line matching the regex, from line index `from` on.
    std::optional<line_match> wait_for_line(const std::string& regex, clock::duration timeout, std::size_t from = 0);

    std::string log() const { return proc_->output_text(); }

private:
    std::unique_ptr<process> proc_;
    std::uint16_t port_ = 0;
    std::string host_;
    std::vector<std::string> addresses_;
    std::size_t access_cursor_ = 0;
};

// Socket file descriptors of a process, waiting (bounded) until the count is at most
// `target`; returns the last count seen.
std::size_t wait_socket_fds_at_most(pid_t pid, std::size_t target, clock::duration timeout);

}  // namespace it
