// Preloaded (LD_PRELOAD) into halfpipe by Connect.ANameRecoversFromALookupThreadThatCouldNotStart:
// while the file named by $HALFPIPE_REFUSE_THREADS exists, a relay worker (a thread
// named halfpipe-w…) cannot start a thread: pthread_create fails with EAGAIN, as at a
// cgroup pids.max or systemd TasksMax limit. Other threads start as usual.
#include <dlfcn.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

extern "C" int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*), void* arg) {
    using real_pthread_create = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
    static const auto real = reinterpret_cast<real_pthread_create>(::dlsym(RTLD_NEXT, "pthread_create"));
    char name[16] = {};
    ::prctl(PR_GET_NAME, name, 0, 0, 0);
    const char* flag = std::getenv("HALFPIPE_REFUSE_THREADS");
    if (std::strncmp(name, "halfpipe-w", 10) == 0 && flag != nullptr && ::access(flag, F_OK) == 0) return EAGAIN;
    return real(thread, attr, start, arg);
}
