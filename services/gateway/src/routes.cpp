#include "routes.hpp"

#include <array>

namespace vigie::gateway {

namespace {

using http::Verb;

constexpr std::array kRoutes = {
    RouteSpec{Verb::post, "/api/v1/users", Upstream::user, false, Retry::never},
    RouteSpec{Verb::get, "/api/v1/users", Upstream::user, true, Retry::idempotent},
    RouteSpec{Verb::get, "/api/v1/users/{id}", Upstream::user, true, Retry::idempotent},
    RouteSpec{Verb::patch, "/api/v1/users/{id}", Upstream::user, true, Retry::never},
    RouteSpec{Verb::delete_, "/api/v1/users/{id}", Upstream::user, true, Retry::idempotent},
    RouteSpec{Verb::post, "/api/v1/auth/login", Upstream::user, false, Retry::never},
    RouteSpec{Verb::post, "/api/v1/orders", Upstream::order, true, Retry::idempotency_key},
    RouteSpec{Verb::get, "/api/v1/orders", Upstream::order, true, Retry::idempotent},
    RouteSpec{Verb::get, "/api/v1/orders/{id}", Upstream::order, true, Retry::idempotent},
    RouteSpec{Verb::post, "/api/v1/orders/{id}/status", Upstream::order, true, Retry::never},
};

}  // namespace

std::span<const RouteSpec> routes() {
    return kRoutes;
}

bool retryable(const RouteSpec& route, const http::Request& request) {
    switch (route.retry) {
        case Retry::idempotent:
            return true;
        case Retry::idempotency_key:
            return !request["Idempotency-Key"].empty();
        case Retry::never:
            return false;
    }
    return false;
}

}  // namespace vigie::gateway
