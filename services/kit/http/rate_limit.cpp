#include "kit/http/rate_limit.hpp"

#include <algorithm>
#include <cmath>

namespace vigie::http {

Clock::duration TokenBucket::take(double rate, double burst, Clock::time_point now) {
    if (now > updated_) {
        double elapsed = std::chrono::duration<double>(now - updated_).count();
        tokens_ = std::min(burst, tokens_ + elapsed * rate);
        updated_ = now;
    }
    if (tokens_ >= 1.0) {
        tokens_ -= 1.0;
        return Clock::duration::zero();
    }
    auto wait = std::chrono::duration<double>((1.0 - tokens_) / rate);
    return std::max(Clock::duration(1), std::chrono::duration_cast<Clock::duration>(wait));
}

RateLimiter::RateLimiter(RateLimitOptions options)
    : options_(options), buckets_(std::max<std::size_t>(options.max_clients, 2)) {
    options_.burst = std::max(options_.burst, 1.0);
}

RateDecision RateLimiter::take(std::string_view client, Clock::time_point now) {
    if (!enabled()) {
        return {};
    }
    auto& bucket = buckets_.find_or_create(client, [&] { return TokenBucket(options_.burst, now); });
    auto wait = bucket.take(options_.rate, options_.burst, now);
    if (wait == Clock::duration::zero()) {
        return {};
    }
    // Retry-After has whole seconds: round up so that a client that obeys it finds a token.
    auto seconds = std::chrono::ceil<std::chrono::seconds>(wait);
    return {false, std::max(seconds, std::chrono::seconds(1))};
}

}  // namespace vigie::http
