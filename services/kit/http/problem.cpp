#include "kit/http/problem.hpp"

#include <nlohmann/json.hpp>

namespace vigie::http {

namespace {

nlohmann::json problem_body(Status status, std::string_view detail, std::string_view type) {
    return nlohmann::json{{"type", type},
                          {"title", std::string(beast_http::obsolete_reason(status))},
                          {"status", static_cast<unsigned>(status)},
                          {"detail", detail}};
}

Response make(Status status, std::string body, std::string_view content_type, unsigned version) {
    Response response{status, version};
    response.set(beast_http::field::content_type, content_type);
    response.body() = std::move(body);
    response.prepare_payload();
    return response;
}

}  // namespace

Response problem(Status status, std::string_view detail, std::string_view type, unsigned version) {
    // error_handler_t::replace: a detail echoing invalid UTF-8 from the client must not throw here.
    return make(status,
                problem_body(status, detail, type).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                "application/problem+json", version);
}

Response problem(Status status, std::string_view detail, const nlohmann::json& extra, unsigned version) {
    auto body = problem_body(status, detail, "about:blank");
    body.update(extra);
    return make(status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/problem+json",
                version);
}

Response json_response(Status status, const nlohmann::json& body, unsigned version) {
    return make(status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json",
                version);
}

}  // namespace vigie::http
