#pragma once
// Kernel pipes for the splice relay: bytes go socket → pipe → socket with
// splice(2) and never enter user space. Like relay buffers, a pipe is borrowed
// only while bytes move and only an empty one comes back, so an idle connection
// holds none; one pool per worker thread and listener, no locking.
#include <cstddef>
#include <sys/types.h>
#include <vector>

namespace halfpipe {

struct kernel_pipe {
    int read_end = -1;
    int write_end = -1;
    explicit operator bool() const noexcept { return read_end >= 0; }
};

// Non-blocking splice(2) between a socket and a pipe: bytes moved, or -errno.
ssize_t splice_from_socket(int socket_fd, const kernel_pipe& pipe, std::size_t max) noexcept;
ssize_t splice_to_socket(const kernel_pipe& pipe, int socket_fd, std::size_t max) noexcept;

class pipe_pool {
public:
    class lease {
    public:
        lease(pipe_pool& pool, kernel_pipe pipe) : pool_(&pool), pipe_(pipe) {}
        lease(lease&& other) noexcept : pending(other.pending), pool_(other.pool_), pipe_(other.pipe_) {
            other.pipe_ = {};
        }
        lease& operator=(lease&&) = delete;
        ~lease() { pool_->give_back(pipe_, pending); }
        const kernel_pipe& pipe() const noexcept { return pipe_; }
        explicit operator bool() const noexcept { return static_cast<bool>(pipe_); }

        std::size_t pending = 0;  // bytes in the pipe, not yet spliced out

    private:
        pipe_pool* pool_;
        kernel_pipe pipe_;
    };

    // capacity: the pipe size asked of the kernel (F_SETPIPE_SZ), the most one
    // splice moves; max_idle bounds what the pool keeps after a burst.
    pipe_pool(std::size_t capacity, std::size_t max_idle) : capacity_(capacity), max_idle_(max_idle) {}
    ~pipe_pool();
    pipe_pool(const pipe_pool&) = delete;
    pipe_pool& operator=(const pipe_pool&) = delete;

    // An empty pipe; an invalid one when the kernel will not make one (out of
    // descriptors), and the caller copies instead.
    lease borrow();
    std::size_t capacity() const noexcept { return capacity_; }

private:
    void give_back(kernel_pipe pipe, std::size_t pending) noexcept;

    std::size_t capacity_;
    std::size_t max_idle_;
    std::vector<kernel_pipe> idle_;
};

}  // namespace halfpipe
