// Preloaded (LD_PRELOAD) into halfpipe by netns_test.py's reload_fails_before_listening:
// while the file named by $HALFPIPE_REFUSE_BIND exists, a bind() to the port in
// $HALFPIPE_REFUSE_BIND_PORT waits a second, then fails with EADDRINUSE: a reload's
// successor that cannot bind one of its addresses, slowly enough for clients to find
// any of its other sockets that already listen. Every other bind() is left alone.
#include <dlfcn.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

extern "C" int bind(int fd, const struct sockaddr* address, socklen_t length) {
    using real_bind = int (*)(int, const struct sockaddr*, socklen_t);
    static const auto real = reinterpret_cast<real_bind>(::dlsym(RTLD_NEXT, "bind"));
    const char* flag = std::getenv("HALFPIPE_REFUSE_BIND");
    const char* port = std::getenv("HALFPIPE_REFUSE_BIND_PORT");
    if (flag != nullptr && port != nullptr && address != nullptr && address->sa_family == AF_INET &&
        length >= sizeof(sockaddr_in) &&
        ntohs(reinterpret_cast<const sockaddr_in*>(address)->sin_port) == std::atoi(port) &&
        ::access(flag, F_OK) == 0) {
        const timespec one_second{1, 0};
        ::nanosleep(&one_second, nullptr);
        errno = EADDRINUSE;
        return -1;
    }
    return real(fd, address, length);
}
