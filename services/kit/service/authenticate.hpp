#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <variant>

#include "kit/auth/jwt.hpp"
#include "kit/config/config.hpp"
#include "kit/http/bounded_map.hpp"
#include "kit/http/types.hpp"

namespace vigie::service {

/// Verifies the bearer token of each request. Every service verifies tokens itself, so it is safe even when
/// reached without the gateway.
///
/// Verified tokens are remembered by their exact text (bounded: two generations, see http::GenerationalMap), so a
/// client's token costs one Ed25519 check for its whole life instead of one per request (that check was 57 % of a
/// read's CPU). A hit still checks expiry with the verifier's rule; a token that differs by one byte is a miss and is
/// verified in full. Thread-safe.
class Authenticator {
  public:
    Authenticator(auth::TokenVerifier verifier, std::size_t cache_capacity);

    /// JWT_PUBLIC_KEY_FILE, JWT_ISSUER (default "vigie") and TOKEN_CACHE_SIZE (default 10000). Throws
    /// config::ConfigError or auth::KeyError.
    static Authenticator from_env(const config::Env& env);

    /// The verified caller. Throws http::ProblemError 401 (missing, malformed, expired or wrongly signed token).
    auth::Claims authenticate(const http::RequestContext& context);
    /// The same at a given time (Unix seconds), for tests.
    auth::Claims authenticate(const http::RequestContext& context, std::int64_t now_unix);

    /// The claims of a valid token, or why it is not valid (the gateway counts refusals by reason).
    std::variant<auth::Claims, auth::TokenError> verify(std::string_view token, std::int64_t now_unix);

    /// Tokens remembered now.
    std::size_t cached() const;

  private:
    auth::TokenVerifier verifier_;
    mutable std::mutex mutex_;  ///< guards cache_
    http::GenerationalMap<auth::Claims> cache_;
};

/// True for the admin role.
inline bool is_admin(const auth::Claims& claims) {
    return claims.role == "admin";
}

}  // namespace vigie::service
