#include "kit/http/router.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace vigie::http {
namespace {

Handler noop() {
    return [](RequestContext&) -> boost::asio::awaitable<Response> { co_return Response{}; };
}

class RouterTest : public ::testing::Test {
  protected:
    void SetUp() override {
        router_.add(Verb::get, "/api/v1/users", noop());
        router_.add(Verb::post, "/api/v1/users", noop());
        router_.add(Verb::get, "/api/v1/users/{id}", noop());
        router_.add(Verb::delete_, "/api/v1/users/{id}", noop());
        router_.add(Verb::get, "/api/v1/users/{id}/orders/{order}", noop());
    }

    RouteMatch match(Verb method, std::string_view path) { return router_.match(method, path, params_); }

    Router router_;
    PathParams params_;
};

TEST_F(RouterTest, MatchesLiteralTemplate) {
    auto result = match(Verb::get, "/api/v1/users");
    ASSERT_EQ(result.kind, RouteMatch::Kind::found);
    EXPECT_EQ(result.route->pattern, "/api/v1/users");
    EXPECT_EQ(result.route->method, Verb::get);
    EXPECT_EQ(result.route->index, 0U);
}

TEST_F(RouterTest, CapturesParameters) {
    auto result = match(Verb::get, "/api/v1/users/42/orders/abc-7");
    ASSERT_EQ(result.kind, RouteMatch::Kind::found);
    EXPECT_EQ(result.route->pattern, "/api/v1/users/{id}/orders/{order}");
    EXPECT_EQ(params_.get("id"), "42");
    EXPECT_EQ(params_.get("order"), "abc-7");
    EXPECT_EQ(params_.get("missing"), "");
}

TEST_F(RouterTest, ParametersAreRawSegments) {
    // No percent-decoding: "%2F" cannot smuggle a '/' into a parameter that handlers then split again.
    auto result = match(Verb::get, "/api/v1/users/a%2Fb");
    ASSERT_EQ(result.kind, RouteMatch::Kind::found);
    EXPECT_EQ(params_.get("id"), "a%2Fb");
}

TEST_F(RouterTest, UnknownPathIsNotFound) {
    EXPECT_EQ(match(Verb::get, "/api/v1/orders").kind, RouteMatch::Kind::not_found);
    EXPECT_EQ(match(Verb::get, "/api/v1/users/1/orders").kind, RouteMatch::Kind::not_found);
    EXPECT_EQ(match(Verb::get, "/").kind, RouteMatch::Kind::not_found);
    EXPECT_EQ(match(Verb::get, "/api/v1/users/1/orders/2/x").kind, RouteMatch::Kind::not_found);
}

TEST_F(RouterTest, WrongMethodListsAllowedMethods) {
    auto result = match(Verb::put, "/api/v1/users/7");
    ASSERT_EQ(result.kind, RouteMatch::Kind::method_not_allowed);
    EXPECT_EQ(result.route, nullptr);
    EXPECT_EQ(result.allow, "GET, DELETE");

    result = match(Verb::delete_, "/api/v1/users");
    ASSERT_EQ(result.kind, RouteMatch::Kind::method_not_allowed);
    EXPECT_EQ(result.allow, "GET, POST");
}

TEST_F(RouterTest, AllowListsEachMethodOnce) {
    router_.add(Verb::get, "/api/v1/users/me", noop());
    auto result = match(Verb::patch, "/api/v1/users/me");
    ASSERT_EQ(result.kind, RouteMatch::Kind::method_not_allowed);
    EXPECT_EQ(result.allow, "GET, DELETE");
}

TEST_F(RouterTest, LaterRouteWithRightMethodWins) {
    router_.add(Verb::post, "/api/v1/users/{id}", noop());
    auto result = match(Verb::post, "/api/v1/users/9");
    ASSERT_EQ(result.kind, RouteMatch::Kind::found);
    EXPECT_EQ(result.route->method, Verb::post);
    EXPECT_TRUE(result.allow.empty());
}

TEST_F(RouterTest, RefusesDotSegmentsAndEmptySegments) {
    for (std::string_view path :
         {"/api/v1/users/.", "/api/v1/users/..", "/api/v1/../v1/users", "/api/v1/%2e%2e/users", "/api/v1/users/%2E",
          "/api/v1/users/.%2e", "/api//v1/users", "//api/v1/users", "api/v1/users", ""}) {
        SCOPED_TRACE(path);
        EXPECT_EQ(match(Verb::get, path).kind, RouteMatch::Kind::not_found);
        std::vector<std::string_view> segments;
        EXPECT_FALSE(split_path(path, segments));
    }
}

TEST_F(RouterTest, TrailingSlashIsAnotherResource) {
    EXPECT_EQ(match(Verb::get, "/api/v1/users/").kind, RouteMatch::Kind::not_found);
    EXPECT_EQ(match(Verb::get, "/api/v1/users/42/").kind, RouteMatch::Kind::not_found);
    EXPECT_EQ(match(Verb::get, "/api/v1/users").kind, RouteMatch::Kind::found);
}

TEST(SplitPath, SplitsSegments) {
    std::vector<std::string_view> segments;
    ASSERT_TRUE(split_path("/a/b/c", segments));
    EXPECT_EQ(segments, (std::vector<std::string_view>{"a", "b", "c"}));
    ASSERT_TRUE(split_path("/", segments));
    EXPECT_TRUE(segments.empty());
    // Names that merely contain dots are fine.
    ASSERT_TRUE(split_path("/v1.2/.../a.b/%2e%2e%2e", segments));
    EXPECT_EQ(segments, (std::vector<std::string_view>{"v1.2", "...", "a.b", "%2e%2e%2e"}));
}

TEST(RouterAdd, RefusesMalformedTemplates) {
    Router router;
    EXPECT_THROW(router.add(Verb::get, "users", noop()), std::invalid_argument);
    EXPECT_THROW(router.add(Verb::get, "/a//b", noop()), std::invalid_argument);
    EXPECT_THROW(router.add(Verb::get, "/a/../b", noop()), std::invalid_argument);
    EXPECT_THROW(router.add(Verb::get, "", noop()), std::invalid_argument);
    EXPECT_TRUE(router.routes().empty());
}

TEST(RouterAdd, RefusesDuplicates) {
    Router router;
    router.add(Verb::get, "/users/{id}", noop());
    EXPECT_THROW(router.add(Verb::get, "/users/{id}", noop()), std::invalid_argument);
    // Same shape under another parameter name: the second could never match.
    EXPECT_THROW(router.add(Verb::get, "/users/{name}", noop()), std::invalid_argument);
    router.add(Verb::put, "/users/{id}", noop());
    router.add(Verb::get, "/users/me", noop());
    EXPECT_EQ(router.routes().size(), 3U);
    EXPECT_EQ(router.routes()[2]->index, 2U);
}

}  // namespace
}  // namespace vigie::http
