#pragma once

#include <span>
#include <string_view>

#include "kit/http/types.hpp"

namespace vigie::gateway {

enum class Upstream { user, order };

/// When a request may be sent again after it possibly reached an upstream.
enum class Retry {
    idempotent,       ///< GET, PUT, DELETE: repeating them changes nothing more
    idempotency_key,  ///< a POST the upstream deduplicates by its Idempotency-Key: retried only when it has one
    never,            ///< a repeat could act twice (sign-up, login, PATCH, status changes)
};

/// One public route. The gateway serves exactly the upstream APIs' route templates, so metric labels are the
/// templates and an unknown path is answered here (404) without costing an upstream anything.
struct RouteSpec {
    http::Verb method;
    std::string_view pattern;
    Upstream upstream;
    bool requires_token;  ///< false only for sign-up and login
    Retry retry;
};

/// Every forwarded route (the aggregation route GET /api/v1/users/{id}/summary is separate).
std::span<const RouteSpec> routes();

/// Whether this request may be resent after it possibly reached an upstream.
bool retryable(const RouteSpec& route, const http::Request& request);

}  // namespace vigie::gateway
