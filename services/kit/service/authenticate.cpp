#include "kit/service/authenticate.hpp"

#include <chrono>

#include "kit/http/problem.hpp"

namespace vigie::service {

auth::Claims authenticate(const http::RequestContext& context, const auth::TokenVerifier& verifier) {
    auto header = context.request[http::beast_http::field::authorization];
    if (header.empty()) {
        throw http::ProblemError(http::Status::unauthorized, "a bearer token is required");
    }
    auto token = auth::bearer_token(header);
    if (!token) {
        throw http::ProblemError(http::Status::unauthorized, "the Authorization header must be 'Bearer <token>'");
    }
    auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    auto result = verifier.verify(*token, now.count());
    if (auto* error = std::get_if<auth::TokenError>(&result)) {
        throw http::ProblemError(http::Status::unauthorized, "invalid token: " + std::string(auth::describe(*error)));
    }
    return std::get<auth::Claims>(std::move(result));
}

}  // namespace vigie::service
