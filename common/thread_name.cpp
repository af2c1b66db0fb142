#include "common/thread_name.hpp"

#include <sys/prctl.h>

#include <algorithm>
#include <array>

namespace halfpipe {

void name_this_thread(std::string_view name) noexcept {
    std::array<char, 16> text{};
    std::copy_n(name.begin(), std::min(name.size(), text.size() - 1), text.begin());
    // A failure only costs the name.
    ::prctl(PR_SET_NAME, text.data(), 0, 0, 0);
}

}  // namespace halfpipe
