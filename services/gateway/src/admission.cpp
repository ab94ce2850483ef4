#include "admission.hpp"

#include "kit/http/problem.hpp"

namespace vigie::gateway {

namespace {

/// Bounded metric label for a refused token.
std::string_view reason_label(auth::TokenError error) {
    switch (error) {
        case auth::TokenError::malformed:
            return "malformed";
        case auth::TokenError::bad_signature:
            return "bad_signature";
        case auth::TokenError::wrong_algorithm:
            return "wrong_algorithm";
        case auth::TokenError::expired:
            return "expired";
        case auth::TokenError::not_yet_valid:
            return "not_yet_valid";
        case auth::TokenError::missing_claim:
            return "missing_claim";
        case auth::TokenError::wrong_issuer:
            return "wrong_issuer";
    }
    return "invalid";
}

}  // namespace

Admission::Admission(auth::TokenVerifier verifier, http::RateLimitOptions rate_limit, std::size_t token_cache_size)
    : authenticator_(std::move(verifier), token_cache_size), limiter_(rate_limit) {
    auto& registry = metrics::registry();
    limited_ = &registry
                    .counter("gateway_rate_limited_total", "Requests refused with 429 by the per-client rate limit.",
                             {"service"})
                    .with({"gateway"});
    rejected_tokens_ = &registry.counter("gateway_token_rejected_total",
                                         "Requests refused with 401 by the gateway, by reason.", {"service", "reason"});
}

std::optional<http::Response> Admission::admit(const http::RequestContext& context, bool requires_token,
                                               http::Clock::time_point now, std::int64_t now_unix) {
    std::optional<std::string> refusal;
    std::string_view reason;
    std::optional<auth::Claims> verified;
    if (requires_token) {
        auto header = context.request[http::beast_http::field::authorization];
        if (header.empty()) {
            refusal = "a bearer token is required";
            reason = "missing";
        } else if (auto token = auth::bearer_token(header); !token) {
            refusal = "the Authorization header must be 'Bearer <token>'";
            reason = "not_bearer";
        } else {
            auto result = authenticator_.verify(*token, now_unix);
            if (auto* error = std::get_if<auth::TokenError>(&result)) {
                refusal = "invalid token: " + std::string(auth::describe(*error));
                reason = reason_label(*error);
            } else {
                verified = std::get<auth::Claims>(std::move(result));
            }
        }
    }

    if (limiter_.enabled()) {
        key_.clear();
        if (verified) {
            key_ += "sub:";
            key_ += verified->subject;
        } else {
            key_ += "ip:";
            key_ += context.client;
        }
        auto decision = limiter_.take(key_, now);
        if (!decision.allowed) {
            limited_->inc();
            auto seconds = std::to_string(decision.retry_after.count());
            auto response =
                http::problem(http::Status::too_many_requests, "rate limit exceeded: retry after " + seconds + " s");
            response.set(http::beast_http::field::retry_after, seconds);
            return response;
        }
    }
    if (refusal) {
        rejected_tokens_->with({"gateway", reason}).inc();
        return http::problem(http::Status::unauthorized, *refusal);
    }
    return std::nullopt;
}

}  // namespace vigie::gateway
