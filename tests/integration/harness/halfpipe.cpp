#include "harness/halfpipe.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <regex>
#include <stdexcept>
#include <thread>

#ifndef HALFPIPE_BINARY
#error "HALFPIPE_BINARY must be defined by the build"
#endif

namespace it {

const std::string& halfpipe_binary() {
    // HALFPIPE_TEST_BINARY runs the suite against another build (or an installed binary).
    static const std::string path = [] {
        const char* override_path = std::getenv("HALFPIPE_TEST_BINARY");
        return std::string(override_path && *override_path ? override_path : HALFPIPE_BINARY);
    }();
    return path;
}

std::map<std::string, std::string> parse_logfmt(const std::string& line) {
    std::map<std::string, std::string> out;
    std::size_t i = 0;
    const std::size_t n = line.size();
    while (i < n) {
        while (i < n && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
        if (i >= n) break;
        const std::size_t key_start = i;
        while (i < n && line[i] != '=' && !std::isspace(static_cast<unsigned char>(line[i]))) ++i;
        std::string key = line.substr(key_start, i - key_start);
        std::string value;
        if (i < n && line[i] == '=') {
            ++i;
            if (i < n && line[i] == '"') {
                ++i;
                while (i < n && line[i] != '"') {
                    if (line[i] == '\\' && i + 1 < n) ++i;
                    value += line[i++];
                }
                if (i < n) ++i;  // closing quote
            } else {
                const std::size_t v = i;
                while (i < n && !std::isspace(static_cast<unsigned char>(line[i]))) ++i;
                value = line.substr(v, i - v);
            }
        }
        if (!key.empty()) out[key] = value;
    }
    return out;
}

std::string access_entry::get(const std::string& key) const {
    auto it = fields.find(key);
    return it == fields.end() ? std::string() : it->second;
}

long long access_entry::number(const std::string& key) const {
    const std::string v = get(key);
    if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
        return -1;
    return std::stoll(v);
}

namespace {
const std::regex& access_regex() {
    static const std::regex re(R"((^|\s)event=access(\s|$))");
    return re;
}
}  // namespace

halfpipe::halfpipe(halfpipe_options o) {
    if (o.upstream.empty()) throw std::invalid_argument("halfpipe_options.upstream is required");
    std::vector<std::string> args{"--listen", o.listen, "--upstream", o.upstream};
    if (o.admin_off) {
        args.push_back("--admin");
        args.push_back("off");
    }
    args.insert(args.end(), o.extra.begin(), o.extra.end());
    // HALFPIPE_TEST_RELAY=splice runs the same tests over the splice relay.
    if (const char* relay = std::getenv("HALFPIPE_TEST_RELAY"); relay && *relay) {
        args.push_back("--relay");
        args.push_back(relay);
    }
    proc_ = std::make_unique<process>(halfpipe_binary(), args, spawn_options{.nofile = o.nofile, .env = o.env});

    wait_listening(o.startup_timeout);
}

void halfpipe::wait_listening(clock::duration timeout) {
    static const std::regex listening(R"((^|\s)event=listening(\s|$).*\baddress=(\S+))");
    auto found = proc_->wait_for_line(listening, timeout);
    if (!found) {
        proc_->kill_now();
        throw std::runtime_error("halfpipe did not log event=listening within the startup timeout; output:\n" +
                                 proc_->output_text());
    }
    const std::string address = found->groups.at(3);
    addresses_.push_back(address);
    const endpoint ep = parse_endpoint(address);
    const std::string text = to_string(ep);
    port_ = static_cast<std::uint16_t>(std::stoul(text.substr(text.rfind(':') + 1)));
    host_ = text.substr(0, text.rfind(':'));
    if (host_.size() >= 2 && host_.front() == '[') host_ = host_.substr(1, host_.size() - 2);
}

halfpipe::halfpipe(const std::vector<std::string>& args, spawn_options spawn)
    : proc_(std::make_unique<process>(halfpipe_binary(), args, spawn)) {}

socket_fd halfpipe::connect(clock::duration timeout, int* err) const {
    return connect_tcp(host_, port_, timeout, err);
}

std::optional<access_entry> halfpipe::next_access(clock::duration timeout) {
    auto found = proc_->wait_for_line(access_regex(), timeout, access_cursor_);
    if (!found) return std::nullopt;
    access_cursor_ = found->index + 1;
    return access_entry{parse_logfmt(found->line), found->line};
}

std::optional<access_entry> halfpipe::access_for_client_port(std::uint16_t client_port, clock::duration timeout) {
    const std::regex re(R"((^|\s)event=access(\s|$).*\bclient=\S*:)" + std::to_string(client_port) + R"((\s|$))");
    auto found = proc_->wait_for_line(re, timeout);
    if (!found) return std::nullopt;
    return access_entry{parse_logfmt(found->line), found->line};
}

std::vector<access_entry> halfpipe::all_access() const {
    std::vector<access_entry> out;
    for (auto& m : proc_->output().find_all(access_regex())) out.push_back({parse_logfmt(m.line), m.line});
    return out;
}

std::optional<line_match> halfpipe::wait_for_line(const std::string& regex, clock::duration timeout, std::size_t from) {
    return proc_->wait_for_line(std::regex(regex), timeout, from);
}

std::size_t wait_socket_fds_at_most(pid_t pid, std::size_t target, clock::duration timeout) {
    const auto deadline = clock::now() + timeout;
    for (;;) {
        const std::size_t n = count_socket_fds(pid);
        if (n <= target || clock::now() >= deadline) return n;
        std::this_thread::sleep_for(10ms);
    }
}

}  // namespace it
