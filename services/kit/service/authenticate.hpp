#pragma once

#include "kit/auth/jwt.hpp"
#include "kit/http/types.hpp"

namespace vigie::service {

/// The verified caller of a request. Throws http::ProblemError 401 (missing, malformed, expired or wrongly signed
/// bearer token). Every service verifies tokens itself, so it is safe even when reached without the gateway.
auth::Claims authenticate(const http::RequestContext& context, const auth::TokenVerifier& verifier);

/// True for the admin role.
inline bool is_admin(const auth::Claims& claims) {
    return claims.role == "admin";
}

}  // namespace vigie::service
