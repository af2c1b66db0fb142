// Close-policy decisions that need no socket: which outcome a connection records,
// which deadline ends it, and the close-kind vocabulary of the config.
#include <gtest/gtest.h>

#include "common/close_kind.hpp"
#include "common/close_outcome.hpp"
#include "server/deadlines.hpp"

namespace halfpipe {
namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

constexpr close_outcome client_fin{initiator::client, close_how::fin, "client_fin"};
constexpr close_outcome upstream_fin{initiator::upstream, close_how::fin, "upstream_fin"};
constexpr close_outcome client_reset{initiator::client, close_how::rst, "client_reset"};
constexpr close_outcome half_close_timeout{initiator::proxy, close_how::timeout, "half_close_timeout"};

TEST(close_outcome_merge, first_end_is_recorded) {
    EXPECT_EQ(merge(std::nullopt, client_fin).reason, "client_fin");
}

TEST(close_outcome_merge, second_fin_does_not_replace_first) {
    EXPECT_EQ(merge(client_fin, upstream_fin).who, initiator::client);
}

TEST(close_outcome_merge, reset_or_timeout_after_fin_is_what_ended_it) {
    EXPECT_EQ(merge(client_fin, client_reset).how, close_how::rst);
    EXPECT_EQ(merge(client_fin, half_close_timeout).reason, "half_close_timeout");
}

TEST(close_outcome_merge, first_abnormal_end_stays) {
    EXPECT_EQ(merge(client_reset, half_close_timeout).reason, "client_reset");
    EXPECT_EQ(merge(half_close_timeout, client_fin).reason, "half_close_timeout");
}

TEST(close_kind_vocabulary, round_trips_and_rejects_unknown) {
    for (auto kind : {close_kind::graceful_fin, close_kind::immediate, close_kind::abortive_rst})
        EXPECT_EQ(parse_close_kind(to_string(kind)), kind);
    EXPECT_EQ(parse_close_kind("RST"), std::nullopt);
    EXPECT_EQ(parse_close_kind(""), std::nullopt);
}

struct deadline_fixture : ::testing::Test {
    clock::time_point t0 = clock::now();
    config::timeouts_config timeouts;  // defaults: idle 1h, half_close 60s, no lifetime
};

TEST_F(deadline_fixture, idle_counts_from_last_activity) {
    auto d = next_deadline(timeouts, {t0, t0 + 5s, std::nullopt});
    EXPECT_EQ(d.reason, "idle_timeout");
    EXPECT_EQ(d.when, t0 + 5s + 1h);
}

TEST_F(deadline_fixture, half_close_wins_once_a_fin_passed) {
    auto d = next_deadline(timeouts, {t0, t0, t0 + 1s});
    EXPECT_EQ(d.reason, "half_close_timeout");
    EXPECT_EQ(d.when, t0 + 1s + 60s);
}

TEST_F(deadline_fixture, traffic_in_the_open_direction_extends_half_close) {
    auto d = next_deadline(timeouts, {t0, t0 + 30s, t0 + 1s});
    EXPECT_EQ(d.when, t0 + 30s + 60s);
}

TEST_F(deadline_fixture, lifetime_caps_a_busy_connection) {
    timeouts.max_lifetime = 10s;
    auto d = next_deadline(timeouts, {t0, t0 + 9s, std::nullopt});
    EXPECT_EQ(d.reason, "max_lifetime");
    EXPECT_EQ(d.when, t0 + 10s);
}

TEST_F(deadline_fixture, all_off_means_no_deadline) {
    timeouts.idle.reset();
    timeouts.half_close.reset();
    auto d = next_deadline(timeouts, {t0, t0, t0});
    EXPECT_EQ(d.when, clock::time_point::max());
    EXPECT_TRUE(d.reason.empty());
}

TEST_F(deadline_fixture, half_close_off_keeps_idle) {
    timeouts.half_close.reset();
    auto d = next_deadline(timeouts, {t0, t0, t0});
    EXPECT_EQ(d.reason, "idle_timeout");
}

}  // namespace
}  // namespace halfpipe
