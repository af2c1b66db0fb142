#include "server/pipe_pool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace halfpipe {

namespace {

void close_pipe(kernel_pipe pipe) noexcept {
    if (!pipe) return;
    ::close(pipe.read_end);
    ::close(pipe.write_end);
}

ssize_t result(ssize_t n) noexcept { return n >= 0 ? n : -errno; }

}  // namespace

ssize_t splice_from_socket(int socket_fd, const kernel_pipe& pipe, std::size_t max) noexcept {
    return result(::splice(socket_fd, nullptr, pipe.write_end, nullptr, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK));
}

ssize_t splice_to_socket(const kernel_pipe& pipe, int socket_fd, std::size_t max) noexcept {
    return result(::splice(pipe.read_end, nullptr, socket_fd, nullptr, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK));
}

pipe_pool::~pipe_pool() {
    for (auto pipe : idle_) close_pipe(pipe);
}

pipe_pool::lease pipe_pool::borrow() {
    if (!idle_.empty()) {
        auto pipe = idle_.back();
        idle_.pop_back();
        return lease(*this, pipe);
    }
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return lease(*this, {});
    // The kernel rounds up to whole pages and may refuse more than pipe-max-size:
    // then the default size (16 pages) stays, which is still a bound.
    ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(capacity_));
    return lease(*this, {fds[0], fds[1]});
}

void pipe_pool::give_back(kernel_pipe pipe, std::size_t pending) noexcept {
    if (!pipe) return;
    // A pipe with bytes left in it (the connection ended mid-way) is not reused.
    if (pending == 0 && idle_.size() < max_idle_)
        idle_.push_back(pipe);
    else
        close_pipe(pipe);
}

}  // namespace halfpipe
