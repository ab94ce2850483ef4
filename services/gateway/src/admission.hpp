#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "kit/auth/jwt.hpp"
#include "kit/http/rate_limit.hpp"
#include "kit/http/types.hpp"
#include "kit/metrics/registry.hpp"
#include "kit/service/authenticate.hpp"

namespace vigie::gateway {

/// The gateway's checks before anything is forwarded: a valid bearer token (on routes that need one), then the
/// caller's rate limit. The client of the rate limit is the token's subject when the request carries a valid token
/// (a user keeps their limit whatever their address), otherwise the peer address (sign-up, login, and requests with
/// a bad token, which are counted so that guessing tokens is limited too).
///
/// Verified tokens are remembered (service::Authenticator, as in the services): a hit skips the Ed25519 check but
/// still checks expiry.
class Admission final {
  public:
    Admission(auth::TokenVerifier verifier, http::RateLimitOptions rate_limit, std::size_t token_cache_size);

    /// nullopt when the request may go on; otherwise the answer: 401 (missing or invalid token), 429 with
    /// Retry-After. `now_unix` is the wall clock in seconds (token expiry), `now` the steady clock (buckets).
    std::optional<http::Response> admit(const http::RequestContext& context, bool requires_token,
                                        http::Clock::time_point now, std::int64_t now_unix);

    std::size_t tracked_clients() const { return limiter_.tracked(); }

  private:
    service::Authenticator authenticator_;
    http::RateLimiter limiter_;
    std::string key_;  ///< scratch buffer for the rate-limit key (single-threaded)
    metrics::Counter* limited_ = nullptr;
    metrics::Family<metrics::Counter>* rejected_tokens_ = nullptr;
};

}  // namespace vigie::gateway
