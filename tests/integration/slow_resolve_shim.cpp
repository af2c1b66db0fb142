// Preloaded (LD_PRELOAD) into halfpipe by the tests that need a slow name lookup: the
// name slow.halfpipe.test, and any name under it (a.slow.halfpipe.test), takes a second
// to resolve, to 127.0.0.1; every other name resolves as usual. No DNS server is
// involved, so the delay is exact. Each slow lookup writes one line to stderr, so that
// a test can count the lookups halfpipe made.
#include <dlfcn.h>
#include <netdb.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <string_view>

extern "C" int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                           struct addrinfo** res) {
    using real_getaddrinfo = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
    static const auto real = reinterpret_cast<real_getaddrinfo>(::dlsym(RTLD_NEXT, "getaddrinfo"));
    constexpr std::string_view slow = "slow.halfpipe.test";
    const std::string_view name = node != nullptr ? node : "";
    if (name == slow || (name.size() > slow.size() && name.ends_with(slow) && name[name.size() - slow.size() - 1] == '.')) {
        const std::string line = "slow_resolve_shim: lookup " + std::string(name) + "\n";
        [[maybe_unused]] auto written = ::write(STDERR_FILENO, line.data(), line.size());
        const timespec one_second{1, 0};
        ::nanosleep(&one_second, nullptr);
        node = "127.0.0.1";
    }
    return real(node, service, hints, res);
}
