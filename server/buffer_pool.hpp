#pragma once
// Relay buffers are borrowed only while bytes move, so an idle connection holds
// none. One pool per worker thread and listener: no locking, one size.
#include <cstddef>
#include <memory>
#include <span>
#include <vector>

namespace halfpipe {

class buffer_pool {
public:
    class lease {
    public:
        lease(buffer_pool& pool, std::unique_ptr<std::byte[]> data) : pool_(&pool), data_(std::move(data)) {}
        lease(lease&&) = default;
        lease& operator=(lease&&) = delete;
        ~lease() {
            if (data_) pool_->give_back(std::move(data_));
        }
        std::span<std::byte> bytes() const noexcept { return {data_.get(), pool_->buffer_size_}; }

    private:
        buffer_pool* pool_;
        std::unique_ptr<std::byte[]> data_;
    };

    // max_idle bounds what the pool keeps after a burst; the rest goes back to malloc.
    buffer_pool(std::size_t buffer_size, std::size_t max_idle) : buffer_size_(buffer_size), max_idle_(max_idle) {}
    buffer_pool(const buffer_pool&) = delete;
    buffer_pool& operator=(const buffer_pool&) = delete;

    lease borrow() {
        if (idle_.empty()) return lease(*this, std::make_unique_for_overwrite<std::byte[]>(buffer_size_));
        auto data = std::move(idle_.back());
        idle_.pop_back();
        return lease(*this, std::move(data));
    }

    std::size_t buffer_size() const noexcept { return buffer_size_; }

private:
    void give_back(std::unique_ptr<std::byte[]> data) {
        if (idle_.size() < max_idle_) idle_.push_back(std::move(data));
    }

    std::size_t buffer_size_;
    std::size_t max_idle_;
    std::vector<std::unique_ptr<std::byte[]>> idle_;
};

}  // namespace halfpipe
