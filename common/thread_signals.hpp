#pragma once
// The process's signals (SIGTERM, SIGINT, SIGHUP, SIGCHLD) belong to the control
// thread, which waits for them. Any other thread the kernel picked would have its
// blocking call cut short with EINTR, and a worker its epoll_wait, for a signal that
// is not its business. A thread starts with the signal mask of the thread that
// starts it: every thread halfpipe starts is started with the signals held back.
#include <signal.h>

namespace halfpipe {

// Blocks every asynchronous signal in the calling thread for its lifetime, then
// restores the mask it found. The signals the kernel sends a faulting thread
// (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS) and SIGABRT stay open.
class signals_held_back {
public:
    signals_held_back() noexcept;
    ~signals_held_back();
    signals_held_back(const signals_held_back&) = delete;
    signals_held_back& operator=(const signals_held_back&) = delete;

private:
    sigset_t previous_;
};

// make() (which starts a thread: a std::thread, a thread pool) called with the
// signals held back, so that the new thread never receives them.
template <typename Make>
auto started_without_signals(Make&& make) -> decltype(make()) {
    signals_held_back held;
    return make();
}

}  // namespace halfpipe
