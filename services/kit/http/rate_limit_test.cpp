#include "kit/http/rate_limit.hpp"

#include <gtest/gtest.h>

#include <string>

#include "kit/http/bounded_map.hpp"

namespace vigie::http {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const Clock::time_point kStart{seconds(1000)};

TEST(TokenBucket, AllowsTheBurstThenRefusesUntilRefilled) {
    TokenBucket bucket(3, kStart);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(bucket.take(2, 3, kStart), Clock::duration::zero()) << "request " << i;
    }
    auto wait = bucket.take(2, 3, kStart);
    EXPECT_EQ(std::chrono::duration_cast<milliseconds>(wait), milliseconds(500));  // 2 tokens/s
    EXPECT_GT(bucket.take(2, 3, kStart + milliseconds(499)), Clock::duration::zero());
    EXPECT_EQ(bucket.take(2, 3, kStart + milliseconds(500)), Clock::duration::zero());
}

TEST(TokenBucket, NeverHoldsMoreThanTheBurst) {
    TokenBucket bucket(2, kStart);
    auto later = kStart + seconds(3600);
    EXPECT_EQ(bucket.take(10, 2, later), Clock::duration::zero());
    EXPECT_EQ(bucket.take(10, 2, later), Clock::duration::zero());
    EXPECT_GT(bucket.take(10, 2, later), Clock::duration::zero());
}

TEST(RateLimiter, LimitsEachClientSeparately) {
    RateLimiter limiter({.rate = 1, .burst = 2, .max_clients = 100});
    EXPECT_TRUE(limiter.take("alice", kStart).allowed);
    EXPECT_TRUE(limiter.take("alice", kStart).allowed);
    auto refused = limiter.take("alice", kStart);
    EXPECT_FALSE(refused.allowed);
    EXPECT_EQ(refused.retry_after, seconds(1));
    EXPECT_TRUE(limiter.take("bob", kStart).allowed);
    EXPECT_TRUE(limiter.take("alice", kStart + seconds(1)).allowed);
}

TEST(RateLimiter, RetryAfterRoundsUpToWholeSeconds) {
    RateLimiter limiter({.rate = 0.25, .burst = 1, .max_clients = 10});
    EXPECT_TRUE(limiter.take("c", kStart).allowed);
    EXPECT_EQ(limiter.take("c", kStart).retry_after, seconds(4));
    EXPECT_EQ(limiter.take("c", kStart + milliseconds(100)).retry_after, seconds(4));  // 3.9 s → 4
    EXPECT_EQ(limiter.take("c", kStart + milliseconds(3500)).retry_after, seconds(1));
}

TEST(RateLimiter, ZeroRateDisablesLimiting) {
    RateLimiter limiter({.rate = 0, .burst = 1, .max_clients = 10});
    EXPECT_FALSE(limiter.enabled());
    for (int i = 0; i < 100; ++i) {
        ASSERT_TRUE(limiter.take("c", kStart).allowed);
    }
    EXPECT_EQ(limiter.tracked(), 0u);
}

TEST(RateLimiter, TableStaysBoundedAndKeepsActiveClients) {
    RateLimiter limiter({.rate = 1, .burst = 1, .max_clients = 64});
    EXPECT_TRUE(limiter.take("busy", kStart).allowed);
    for (int i = 0; i < 10000; ++i) {
        limiter.take("scanner-" + std::to_string(i), kStart);
        if (i % 16 == 0) {
            // The busy client keeps coming back: its empty bucket must not be forgotten (that would reset it).
            ASSERT_FALSE(limiter.take("busy", kStart).allowed) << "after " << i << " other clients";
        }
        ASSERT_LE(limiter.tracked(), 64u);
    }
}

TEST(GenerationalMap, BoundsSizeAndPromotesRecentEntries) {
    GenerationalMap<int> map(4);  // two generations of two
    map.find_or_create("a", [] { return 1; });
    map.find_or_create("b", [] { return 2; });
    map.find_or_create("c", [] { return 3; });  // a, b move to the previous generation
    ASSERT_NE(map.find("a"), nullptr);          // promoted: c, a current; b previous
    map.find_or_create("d", [] { return 4; });  // rotation: c, a previous; d current; b forgotten
    EXPECT_EQ(map.find("b"), nullptr);
    ASSERT_NE(map.find("a"), nullptr);
    EXPECT_EQ(*map.find("a"), 1);
    EXPECT_LE(map.size(), 4u);
    EXPECT_EQ(map.find_or_create("a", [] { return 99; }), 1);
}

}  // namespace
}  // namespace vigie::http
