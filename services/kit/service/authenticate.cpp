#include "kit/service/authenticate.hpp"

#include <chrono>
#include <string>
#include <utility>

#include "kit/http/problem.hpp"

namespace vigie::service {

Authenticator::Authenticator(auth::TokenVerifier verifier, std::size_t cache_capacity)
    : verifier_(std::move(verifier)), cache_(cache_capacity) {}

Authenticator Authenticator::from_env(const config::Env& env) {
    auto verifier =
        auth::TokenVerifier::from_pem_file(env.string("JWT_PUBLIC_KEY_FILE"), env.string("JWT_ISSUER", "vigie"));
    auto capacity = static_cast<std::size_t>(env.integer("TOKEN_CACHE_SIZE", 10000, 2, 10000000));
    return Authenticator(std::move(verifier), capacity);
}

std::variant<auth::Claims, auth::TokenError> Authenticator::verify(std::string_view token, std::int64_t now_unix) {
    {
        const std::lock_guard lock(mutex_);
        if (const auto* cached = cache_.find(token)) {
            // The verifier's rule: expired once now >= exp + skew.
            if (now_unix >= cached->expires_at + auth::kClockSkewSeconds) {
                return auth::TokenError::expired;
            }
            return *cached;
        }
    }
    // The signature check runs outside the lock: it is the slow part, and verify() is thread-safe.
    auto result = verifier_.verify(token, now_unix);
    if (const auto* claims = std::get_if<auth::Claims>(&result)) {
        const std::lock_guard lock(mutex_);
        cache_.find_or_create(token, [&] { return *claims; });
    }
    return result;
}

auth::Claims Authenticator::authenticate(const http::RequestContext& context, std::int64_t now_unix) {
    auto header = context.request[http::beast_http::field::authorization];
    if (header.empty()) {
        throw http::ProblemError(http::Status::unauthorized, "a bearer token is required");
    }
    auto token = auth::bearer_token(header);
    if (!token) {
        throw http::ProblemError(http::Status::unauthorized, "the Authorization header must be 'Bearer <token>'");
    }
    auto result = verify(*token, now_unix);
    if (auto* error = std::get_if<auth::TokenError>(&result)) {
        throw http::ProblemError(http::Status::unauthorized, "invalid token: " + std::string(auth::describe(*error)));
    }
    return std::get<auth::Claims>(std::move(result));
}

auth::Claims Authenticator::authenticate(const http::RequestContext& context) {
    auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    return authenticate(context, now.count());
}

std::size_t Authenticator::cached() const {
    const std::lock_guard lock(mutex_);
    return cache_.size();
}

}  // namespace vigie::service
