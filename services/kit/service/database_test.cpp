#include "kit/service/database.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <nlohmann/json.hpp>

#include "kit/http/problem.hpp"
#include "kit/log/log.hpp"

namespace vigie::service {
namespace {

namespace asio = boost::asio;
using http::Status;
using Kind = db::DbError::Kind;

/// Calls `handler` once, outside any server.
http::Response call(const http::Handler& handler) {
    asio::io_context io;
    http::Request request{http::Verb::get, "/x", 11};
    http::RequestContext context{request, {}, "/x", "/x", {}, {}, {}, {}, {}};
    auto future = asio::co_spawn(io, handler(context), asio::use_future);
    io.run();
    return future.get();
}

http::Handler failing_with(Kind kind) {
    return [kind](http::RequestContext&) -> asio::awaitable<http::Response> {
        throw db::DbError(kind, "boom");
        co_return http::Response{};
    };
}

TEST(WithDatabaseErrors, PassesResponsesThrough) {
    auto handler = with_database_errors([](http::RequestContext&) -> asio::awaitable<http::Response> {
        co_return http::json_response(Status::created, {{"id", 1}});
    });
    auto response = call(handler);
    EXPECT_EQ(response.result(), Status::created);
    EXPECT_EQ(response.body(), R"({"id":1})");
}

TEST(WithDatabaseErrors, TransientTroubleIs503WithRetryAfter) {
    log::init("database-test", log::Level::error);
    for (auto kind : {Kind::unavailable, Kind::timeout, Kind::pool_exhausted, Kind::serialization}) {
        SCOPED_TRACE(db::to_string(kind));
        auto response = call(with_database_errors(failing_with(kind)));
        EXPECT_EQ(response.result(), Status::service_unavailable);
        EXPECT_EQ(response[http::beast_http::field::retry_after], "1");
        EXPECT_EQ(response[http::beast_http::field::content_type], "application/problem+json");
        EXPECT_EQ(response.body().find("boom"), std::string::npos);  // no database detail leaks out
    }
}

TEST(WithDatabaseErrors, OtherErrorsAreRethrown) {
    EXPECT_THROW(call(with_database_errors(failing_with(Kind::constraint_violation))), db::DbError);
    EXPECT_THROW(call(with_database_errors(failing_with(Kind::other))), db::DbError);
    auto problem = with_database_errors([](http::RequestContext&) -> asio::awaitable<http::Response> {
        throw http::ProblemError(Status::not_found, "no such thing");
        co_return http::Response{};
    });
    EXPECT_THROW(call(problem), http::ProblemError);
}

TEST(DatabaseOptions, ReadsTheEnvironment) {
    auto env = config::Env::from_map(
        {{"DATABASE_URL", "postgresql://app@localhost/app"}, {"DB_POOL_SIZE", "4"}, {"DB_ACQUIRE_TIMEOUT", "250ms"}});
    auto options = database_options(env, "users");
    EXPECT_EQ(options.conninfo, "postgresql://app@localhost/app");
    EXPECT_EQ(options.name, "users");
    EXPECT_EQ(options.size, 4U);
    EXPECT_EQ(options.max_waiters, 256U);
    EXPECT_EQ(options.acquire_timeout, std::chrono::milliseconds(250));
    EXPECT_EQ(options.query_timeout, std::chrono::milliseconds(2000));
}

TEST(DatabaseOptions, RefusesBadValues) {
    EXPECT_THROW(database_options(config::Env::from_map({}), "users"), config::ConfigError);
    EXPECT_THROW(database_options(config::Env::from_map({{"DATABASE_URL", "x"}, {"DB_POOL_SIZE", "0"}}), "users"),
                 config::ConfigError);
    EXPECT_THROW(database_options(config::Env::from_map({{"DATABASE_URL", "x"}, {"DB_POOL_SIZE", "many"}}), "users"),
                 config::ConfigError);
}

}  // namespace
}  // namespace vigie::service
