#pragma once

#include <chrono>
#include <cstddef>
#include <string_view>

#include "kit/http/bounded_map.hpp"
#include "kit/http/types.hpp"

namespace vigie::http {

/// A token bucket: holds up to `burst` tokens and regains `rate` tokens per second. Pure logic on a given clock.
class TokenBucket {
  public:
    TokenBucket(double burst, Clock::time_point now) : tokens_(burst), updated_(now) {}

    /// Takes one token when there is one and returns zero; otherwise takes nothing and returns how long until a
    /// token is available.
    Clock::duration take(double rate, double burst, Clock::time_point now);
    double tokens() const { return tokens_; }

  private:
    double tokens_;
    Clock::time_point updated_;
};

struct RateLimitOptions {
    double rate = 100.0;               ///< tokens per second per client; <= 0 disables limiting
    double burst = 200.0;              ///< bucket size: requests a quiet client may send at once
    std::size_t max_clients = 100000;  ///< clients tracked at most (least recently seen are forgotten)
};

/// The outcome of one admission.
struct RateDecision {
    bool allowed = true;
    std::chrono::seconds retry_after{0};  ///< when refused: whole seconds until a token is back (at least 1)
};

/// Per-client token buckets in a bounded table. A forgotten client starts again with a full bucket, which is the
/// state an idle client reaches anyway; only clients that were active within the last max_clients/2 distinct
/// clients keep their state. Single-threaded, like the server that uses it.
class RateLimiter {
  public:
    explicit RateLimiter(RateLimitOptions options);

    bool enabled() const { return options_.rate > 0; }
    /// Charges one request to `client`.
    RateDecision take(std::string_view client, Clock::time_point now);
    std::size_t tracked() const { return buckets_.size(); }
    const RateLimitOptions& options() const { return options_; }

  private:
    RateLimitOptions options_;
    GenerationalMap<TokenBucket> buckets_;
};

}  // namespace vigie::http
