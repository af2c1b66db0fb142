#include "common/thread_signals.hpp"

#include <pthread.h>

#include <initializer_list>

namespace halfpipe {

signals_held_back::signals_held_back() noexcept {
    sigset_t asynchronous;
    ::sigfillset(&asynchronous);
    for (int synchronous : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT})
        ::sigdelset(&asynchronous, synchronous);
    ::pthread_sigmask(SIG_BLOCK, &asynchronous, &previous_);
}

signals_held_back::~signals_held_back() { ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }

}  // namespace halfpipe
