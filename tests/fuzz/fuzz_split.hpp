#pragma once
// Shared by the libFuzzer targets: turns the first bytes of a fuzz input into a deterministic
// sequence of piece sizes, so that every input is also a way of splitting itself.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace halfpipe::fuzz {

class splitter {
public:
    // Consumes up to 8 bytes of `data` as the seed.
    splitter(const std::uint8_t*& data, std::size_t& size) {
        const std::size_t n = size < 8 ? size : 8;
        std::memcpy(&state_, data, n);
        data += n;
        size -= n;
    }

    // Next piece size: mostly 1..16 bytes, sometimes 0 (an empty read), sometimes up to 4 KiB.
    std::size_t next() {
        const std::uint64_t r = step();
        switch (r % 8) {
            case 0: return 0;
            case 1: return 1 + (r >> 8) % 4096;
            default: return 1 + (r >> 8) % 16;
        }
    }

    std::uint64_t step() {  // splitmix64
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

private:
    std::uint64_t state_ = 0;
};

}  // namespace halfpipe::fuzz

// Like assert(), but also in release builds: libFuzzer reports the abort as a crash.
#define FUZZ_CHECK(cond)                                                                     \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            std::fprintf(stderr, "FUZZ_CHECK failed: %s at %s:%d\n", #cond, __FILE__, __LINE__); \
            std::abort();                                                                    \
        }                                                                                    \
    } while (0)
