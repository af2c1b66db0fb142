// Preloaded (LD_PRELOAD) into halfpipe by Drain.SessionEndedWhileResolvingNeverConnects:
// the name slow.halfpipe.test takes a second to resolve, to 127.0.0.1; every other name
// resolves as usual. No DNS server is involved, so the delay is exact.
#include <dlfcn.h>
#include <netdb.h>
#include <time.h>

#include <cstring>

extern "C" int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                           struct addrinfo** res) {
    using real_getaddrinfo = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
    static const auto real = reinterpret_cast<real_getaddrinfo>(::dlsym(RTLD_NEXT, "getaddrinfo"));
    if (node != nullptr && std::strcmp(node, "slow.halfpipe.test") == 0) {
        const timespec one_second{1, 0};
        ::nanosleep(&one_second, nullptr);
        node = "127.0.0.1";
    }
    return real(node, service, hints, res);
}
