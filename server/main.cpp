#include <csignal>
#include <fstream>
#include <stdexcept>

#include "common/log.hpp"
#include "server/cli.hpp"
#include "server/fd_limit.hpp"
#include "server/proxy.hpp"
#include "server/successor.hpp"

namespace {

// A handover (a successor started on the same ports, then SIGTERM here) hands over
// the connections still queued in this process's listeners only if the kernel
// migrates them; otherwise closing the listeners resets them. Kernels before 5.14
// have no such setting, and then nothing is said.
bool queued_connections_reset_at_stop() {
    std::ifstream file("/proc/sys/net/ipv4/tcp_migrate_req");
    int value = 1;
    return file >> value && value == 0;
}

}  // namespace

int main(int argc, char** argv) {
    // Before any thread starts: it changes the environment.
    const halfpipe::process_context process{halfpipe::restart_command(argc, argv), halfpipe::take_ready_fd()};
    auto cli = halfpipe::parse_cli(argc, argv);
    if (cli.what == halfpipe::cli_result::action::exit) return cli.exit_code;

    // Asio sends with MSG_NOSIGNAL, but splice(2) into a socket has no such flag:
    // a peer gone away must be an EPIPE to handle, not a signal that kills us.
    std::signal(SIGPIPE, SIG_IGN);
    // An ignored SIGCHLD, inherited from whoever started us, would have the kernel reap
    // a failed reload's successor before we learn its exit status.
    std::signal(SIGCHLD, SIG_DFL);
    halfpipe::log::init();
    auto& log = halfpipe::log::get();
    auto fd_limit = halfpipe::raise_fd_limit();
    log.info("event=starting version={} config=\"{}\" workers={} cpu_affinity={} resolve_timeout={} listeners={} "
             "nofile={}",
             HALFPIPE_VERSION, cli.source, cli.cfg.workers, halfpipe::config::to_string(cli.cfg.cpu_affinity),
             cli.cfg.resolve_timeout ? std::to_string(cli.cfg.resolve_timeout->count()) + "ms" : "off",
             cli.cfg.listeners.size(), fd_limit);
    if (fd_limit < 1024)
        log.warn("event=low_fd_limit nofile={} hint=\"each connection needs two descriptors; raise LimitNOFILE\"",
                 fd_limit);
    if (queued_connections_reset_at_stop())
        log.info("event=tcp_migrate_req_off hint=\"connections queued when this process stops are reset, not handed "
                 "to a successor on the same ports; set net.ipv4.tcp_migrate_req=1 for handovers\"");
    try {
        return halfpipe::run_proxy(cli.cfg, process);
    } catch (const std::runtime_error& e) {  // what the system refused: a bind, a thread, libcrypt
        log.error("event=fatal error=\"{}\"", e.what());
        return 1;
    }
}
