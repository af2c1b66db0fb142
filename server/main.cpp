#include <csignal>
#include <exception>
#include <boost/system/system_error.hpp>
#include <system_error>

#include "common/log.hpp"
#include "server/cli.hpp"
#include "server/fd_limit.hpp"
#include "server/proxy.hpp"

int main(int argc, char** argv) {
    auto cli = halfpipe::parse_cli(argc, argv);
    if (cli.what == halfpipe::cli_result::action::exit) return cli.exit_code;

    // Asio sends with MSG_NOSIGNAL, but splice(2) into a socket has no such flag:
    // a peer gone away must be an EPIPE to handle, not a signal that kills us.
    std::signal(SIGPIPE, SIG_IGN);
    halfpipe::log::init();
    auto& log = halfpipe::log::get();
    auto fd_limit = halfpipe::raise_fd_limit();
    log.info("event=starting version={} config=\"{}\" workers={} listeners={} nofile={}", HALFPIPE_VERSION, cli.source,
             cli.cfg.workers, cli.cfg.listeners.size(), fd_limit);
    if (fd_limit < 1024)
        log.warn("event=low_fd_limit nofile={} hint=\"each connection needs two descriptors; raise LimitNOFILE\"",
                 fd_limit);
    try {
        return halfpipe::run_proxy(cli.cfg);
    } catch (const boost::system::system_error& e) {  // a bind that failed, for one
        log.error("event=fatal error=\"{}\"", e.what());
        return 1;
    } catch (const std::system_error& e) {
        log.error("event=fatal error=\"{}\"", e.what());
        return 1;
    }
}
