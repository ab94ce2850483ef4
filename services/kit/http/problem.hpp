#pragma once

#include <exception>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "kit/http/types.hpp"

namespace vigie::http {

/// An RFC 7807 `application/problem+json` response. `type` is a URI reference naming the problem kind
/// (defaults to "about:blank", whose title is the status reason).
Response problem(Status status, std::string_view detail, std::string_view type = "about:blank", unsigned version = 11);

/// The same for a literal type URI: without it `problem(status, "detail", "https://…")` would be ambiguous between
/// the string_view and the nlohmann::json overloads.
inline Response problem(Status status, std::string_view detail, const char* type, unsigned version = 11) {
    return problem(status, detail, std::string_view(type), version);
}

/// The same with extra members (e.g. {"errors": [...]}) merged into the body.
Response problem(Status status, std::string_view detail, const nlohmann::json& extra, unsigned version = 11);

/// A JSON response with `Content-Type: application/json`.
Response json_response(Status status, const nlohmann::json& body, unsigned version = 11);

/// Sends a problem from deep inside a handler: the server turns it into the response.
class ProblemError : public std::exception {
  public:
    ProblemError(Status status, std::string detail) : status_(status), detail_(std::move(detail)) {}
    Status status() const { return status_; }
    const char* what() const noexcept override { return detail_.c_str(); }

  private:
    Status status_;
    std::string detail_;
};

}  // namespace vigie::http
