// parse_duration and parse_size: the grammar every duration and size in the config shares.
#include <gtest/gtest.h>

#include "config/config.hpp"

namespace halfpipe::config {
namespace {

std::string duration_error(const std::string& text, bool allow_off = true) {
    try {
        parse_duration(text, allow_off);
    } catch (const config_error& e) {
        return e.what();
    }
    ADD_FAILURE() << "no config_error for duration \"" << text << "\"";
    return {};
}

std::string size_error(const std::string& text) {
    try {
        parse_size(text);
    } catch (const config_error& e) {
        return e.what();
    }
    ADD_FAILURE() << "no config_error for size \"" << text << "\"";
    return {};
}

TEST(parse_duration, single_units) {
    EXPECT_EQ(parse_duration("250ms", false), duration{250});
    EXPECT_EQ(parse_duration("5s", false), duration{5'000});
    EXPECT_EQ(parse_duration("2m", false), duration{120'000});
    EXPECT_EQ(parse_duration("1h", false), duration{3'600'000});
    EXPECT_EQ(parse_duration("90m", false), duration{5'400'000});
    EXPECT_EQ(parse_duration("1500ms", false), duration{1'500});
}

TEST(parse_duration, combined_units_largest_first) {
    EXPECT_EQ(parse_duration("1h30m", false), duration{5'400'000});
    EXPECT_EQ(parse_duration("2s500ms", false), duration{2'500});
    EXPECT_EQ(parse_duration("1h0m1s", false), duration{3'601'000});
    EXPECT_EQ(parse_duration("1h2m3s4ms", false), duration{3'723'004});
    // "m" followed by "s" must not be read as "ms".
    EXPECT_EQ(parse_duration("1m5s", false), duration{65'000});
}

TEST(parse_duration, leading_zeros_parse) {
    EXPECT_EQ(parse_duration("007s", false), duration{7'000});
    EXPECT_EQ(parse_duration("0h1s", false), duration{1'000});
}

TEST(parse_duration, zero_is_rejected) {
    // Every duration is a timer; "off" is how to say never, so the command line gets the same rule.
    EXPECT_EQ(duration_error("0s"), "invalid duration \"0s\": must be greater than 0 (use off to disable)");
    EXPECT_EQ(duration_error("0ms", false), "invalid duration \"0ms\": must be greater than 0");
    EXPECT_NE(duration_error("0h0m").find("must be greater than 0"), std::string::npos);
}

TEST(parse_duration, off_only_where_allowed) {
    EXPECT_EQ(parse_duration("off", true), std::nullopt);
    const auto message = duration_error("off", false);
    EXPECT_NE(message.find("\"off\" is not allowed here"), std::string::npos) << message;
    EXPECT_EQ(message.find("or off"), std::string::npos) << message;
    // Only the exact word: YAML's other spellings of false are not durations.
    duration_error("Off");
    duration_error("false");
    duration_error("none");
}

TEST(parse_duration, bare_number_says_a_unit_is_required) {
    EXPECT_EQ(duration_error("5"), "invalid duration \"5\": a unit is required (ms, s, m or h), e.g. 5s");
    EXPECT_NE(duration_error("0").find("a unit is required"), std::string::npos);
    // A trailing number after a unit gets the same reason, without a misleading example.
    EXPECT_EQ(duration_error("1h30"), "invalid duration \"1h30\": a unit is required (ms, s, m or h)");
}

TEST(parse_duration, invalid_text_names_the_value_and_the_expected_form) {
    EXPECT_EQ(duration_error("5x"), "invalid duration \"5x\" (expected e.g. 250ms, 5s, 1h30m or off)");
    EXPECT_EQ(duration_error("5x", false), "invalid duration \"5x\" (expected e.g. 250ms, 5s, 1h30m)");
    for (const char* text : {"", "s", "ms", "-5s", "+5s", " 5s", "5s ", "5 s", "5S", "5Ms", "1.5s", "5sec", "5mss",
                             "5d", "1h 30m", "1h-30m", "h1", "0x10s", "5msx"}) {
        const auto message = duration_error(text);
        EXPECT_NE(message.find("invalid duration \"" + std::string(text) + "\""), std::string::npos) << message;
    }
}

TEST(parse_duration, units_must_descend_and_not_repeat) {
    EXPECT_NE(duration_error("30m1h").find("largest to smallest"), std::string::npos);
    EXPECT_NE(duration_error("1s1s").find("largest to smallest"), std::string::npos);
    EXPECT_NE(duration_error("500ms1s").find("largest to smallest"), std::string::npos);
}

TEST(parse_duration, overflow_is_an_error_not_a_wrap) {
    EXPECT_EQ(parse_duration("1000000h", false), duration{3'600'000'000'000LL});
    EXPECT_NE(duration_error("1000001h").find("too large"), std::string::npos);
    EXPECT_NE(duration_error("999999h61m").find("too large"), std::string::npos);
    EXPECT_NE(duration_error("99999999999999999999ms").find("too large"), std::string::npos);
    EXPECT_NE(duration_error("9223372036854775807s").find("too large"), std::string::npos);
}

TEST(parse_size, bytes_and_binary_suffixes) {
    EXPECT_EQ(parse_size("0"), 0u);
    EXPECT_EQ(parse_size("65536"), 65536u);
    EXPECT_EQ(parse_size("64KiB"), 64u * 1024);
    EXPECT_EQ(parse_size("1MiB"), 1024u * 1024);
    EXPECT_EQ(parse_size("16MiB"), 16u * 1024 * 1024);
    EXPECT_EQ(parse_size("2GiB"), std::size_t{2} << 30);
    EXPECT_EQ(parse_size("0KiB"), 0u);
}

TEST(parse_size, invalid_sizes) {
    EXPECT_EQ(size_error("64kb"),
              "invalid size \"64kb\" (expected a number of bytes, or a number with KiB, MiB or GiB, e.g. 64KiB)");
    for (const char* text :
         {"", "KiB", "64KB", "64K", "64kib", "64 KiB", "-1", "+1", "1.5MiB", "64KiBx", "0x10", " 1", "1TiB", "5s"}) {
        const auto message = size_error(text);
        EXPECT_NE(message.find("invalid size \"" + std::string(text) + "\""), std::string::npos) << message;
    }
}

TEST(parse_size, overflow_is_an_error_not_a_wrap) {
    EXPECT_NE(size_error("99999999999999999999").find("too large"), std::string::npos);
    EXPECT_NE(size_error("18446744073709551615GiB").find("too large"), std::string::npos);
    EXPECT_EQ(parse_size("18446744073709551615"), std::size_t{18446744073709551615ULL});
}

}  // namespace
}  // namespace halfpipe::config
