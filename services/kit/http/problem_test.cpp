#include "kit/http/problem.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace vigie::http {
namespace {

TEST(Problem, HasRfc7807Fields) {
    auto response = problem(Status::not_found, "no such user");
    EXPECT_EQ(response.result(), Status::not_found);
    EXPECT_EQ(response[beast_http::field::content_type], "application/problem+json");
    EXPECT_EQ(response[beast_http::field::content_length], std::to_string(response.body().size()));
    EXPECT_EQ(response.version(), 11U);
    auto body = nlohmann::json::parse(response.body());
    EXPECT_EQ(body["type"], "about:blank");
    EXPECT_EQ(body["title"], "Not Found");
    EXPECT_EQ(body["status"], 404);
    EXPECT_EQ(body["detail"], "no such user");
    EXPECT_EQ(body.size(), 4U);
}

TEST(Problem, CustomTypeAndVersion) {
    auto response = problem(Status::conflict, "email taken", "https://vigie.dev/problems/email-taken", 10);
    EXPECT_EQ(response.version(), 10U);
    auto body = nlohmann::json::parse(response.body());
    EXPECT_EQ(body["type"], "https://vigie.dev/problems/email-taken");
    EXPECT_EQ(body["title"], "Conflict");
    EXPECT_EQ(body["status"], 409);
}

TEST(Problem, ExtraMembersAreMerged) {
    nlohmann::json extra = {{"errors", {{{"field", "email"}}}}, {"retry", true}};
    auto response = problem(Status::unprocessable_entity, "invalid", extra);
    auto body = nlohmann::json::parse(response.body());
    EXPECT_EQ(body["status"], 422);
    EXPECT_EQ(body["detail"], "invalid");
    EXPECT_EQ(body["errors"][0]["field"], "email");
    EXPECT_EQ(body["retry"], true);
}

TEST(Problem, InvalidUtf8DetailDoesNotThrow) {
    Response response;
    ASSERT_NO_THROW(response = problem(Status::bad_request, "bad value '\xFF\xFE'"));
    auto body = nlohmann::json::parse(response.body());
    EXPECT_EQ(body["status"], 400);
    EXPECT_NE(body["detail"].get<std::string>().find("bad value"), std::string::npos);
}

TEST(JsonResponse, SetsContentTypeAndLength) {
    auto response = json_response(Status::created, {{"id", 7}});
    EXPECT_EQ(response.result(), Status::created);
    EXPECT_EQ(response[beast_http::field::content_type], "application/json");
    EXPECT_EQ(response.body(), R"({"id":7})");
    EXPECT_EQ(response[beast_http::field::content_length], "8");
}

TEST(ProblemError, CarriesStatusAndDetail) {
    ProblemError error(Status::too_many_requests, "slow down");
    EXPECT_EQ(error.status(), Status::too_many_requests);
    EXPECT_STREQ(error.what(), "slow down");
}

}  // namespace
}  // namespace vigie::http
