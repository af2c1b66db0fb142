// Durations and sizes as written in the config file and on the command line.
#include <charconv>
#include <cstdint>
#include <limits>
#include <string_view>

#include "config/config.hpp"

namespace halfpipe::config {
namespace {

// Far beyond any sensible timeout, yet small enough that now() + d can never
// overflow a nanosecond steady_clock deadline.
constexpr std::int64_t max_duration_ms = 1'000'000LL * 3'600'000LL;  // 1000000h

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string duration_hint(bool allow_off) {
    return allow_off ? "(expected e.g. 250ms, 5s, 1h30m or off)" : "(expected e.g. 250ms, 5s, 1h30m)";
}

[[noreturn]] void bad_duration(const std::string& text, bool allow_off) {
    throw config_error("invalid duration \"" + text + "\" " + duration_hint(allow_off));
}

// Consumes a run of decimal digits; nullopt on overflow of std::uint64_t.
std::optional<std::uint64_t> take_number(std::string_view& rest) {
    std::size_t digits = 0;
    while (digits < rest.size() && is_digit(rest[digits])) ++digits;
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(rest.data(), rest.data() + digits, value);
    if (ec != std::errc{} || end != rest.data() + digits) return std::nullopt;
    rest.remove_prefix(digits);
    return value;
}

}  // namespace

std::optional<duration> parse_duration(const std::string& text, bool allow_off) {
    if (text == "off") {
        if (allow_off) return std::nullopt;
        throw config_error("\"off\" is not allowed here " + duration_hint(false));
    }
    if (text.empty() || !is_digit(text.front())) bad_duration(text, allow_off);

    struct unit {
        std::string_view suffix;
        std::int64_t ms;
    };
    // Descending, and each at most once, so "1h30m" reads one way only.
    static constexpr unit units[] = {{"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}, {"ms", 1}};

    std::string_view rest = text;
    std::int64_t total_ms = 0;
    std::size_t next_unit = 0;  // units before this index are used up
    while (!rest.empty()) {
        if (!is_digit(rest.front())) bad_duration(text, allow_off);
        const auto number = take_number(rest);
        if (!number) throw config_error("duration \"" + text + "\" is too large (at most 1000000h)");
        if (rest.empty()) {
            // A bare number is the classic silent mistake (seconds? milliseconds?).
            const std::string example = next_unit == 0 ? ", e.g. " + text + "s" : "";
            throw config_error("invalid duration \"" + text + "\": a unit is required (ms, s, m or h)" + example);
        }
        // "ms" before "m": take the longest suffix that matches.
        std::size_t found = std::size(units);
        for (std::size_t i = 0; i < std::size(units); ++i) {
            const auto suffix = units[i].suffix;
            if (rest.substr(0, suffix.size()) != suffix) continue;
            if (found == std::size(units) || suffix.size() > units[found].suffix.size()) found = i;
        }
        if (found == std::size(units)) bad_duration(text, allow_off);
        if (found < next_unit) {
            throw config_error("invalid duration \"" + text +
                               "\": units must go from largest to smallest, each once (e.g. 1h30m)");
        }
        rest.remove_prefix(units[found].suffix.size());
        next_unit = found + 1;
        const auto unit_ms = static_cast<std::uint64_t>(units[found].ms);
        if (*number > static_cast<std::uint64_t>(max_duration_ms) / unit_ms ||
            total_ms + static_cast<std::int64_t>(*number * unit_ms) > max_duration_ms) {
            throw config_error("duration \"" + text + "\" is too large (at most 1000000h)");
        }
        total_ms += static_cast<std::int64_t>(*number * unit_ms);
    }
    // Every duration halfpipe takes is a timer; one that fires at once is never
    // what was meant, and "off" is the way to say "never".
    if (total_ms == 0) {
        throw config_error("invalid duration \"" + text + "\": must be greater than 0" +
                           (allow_off ? " (use off to disable)" : ""));
    }
    return duration{total_ms};
}

std::size_t parse_size(const std::string& text) {
    const auto bad = [&text]() -> config_error {
        return config_error("invalid size \"" + text +
                            "\" (expected a number of bytes, or a number with KiB, MiB or GiB, e.g. 64KiB)");
    };
    if (text.empty() || !is_digit(text.front())) throw bad();

    std::string_view rest = text;
    const auto number = take_number(rest);
    if (!number) throw config_error("size \"" + text + "\" is too large");

    std::uint64_t multiplier = 1;
    if (rest == "KiB")
        multiplier = 1ULL << 10;
    else if (rest == "MiB")
        multiplier = 1ULL << 20;
    else if (rest == "GiB")
        multiplier = 1ULL << 30;
    else if (!rest.empty())
        throw bad();

    if (*number > std::numeric_limits<std::size_t>::max() / multiplier)
        throw config_error("size \"" + text + "\" is too large");
    return static_cast<std::size_t>(*number * multiplier);
}

}  // namespace halfpipe::config
