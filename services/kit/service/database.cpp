#include "kit/service/database.hpp"

#include "kit/http/problem.hpp"
#include "kit/log/log.hpp"

namespace vigie::service {

db::PoolOptions database_options(const config::Env& env, std::string pool_name) {
    db::PoolOptions options;
    options.conninfo = env.secret("DATABASE_URL");
    options.name = std::move(pool_name);
    options.size = static_cast<std::size_t>(env.integer("DB_POOL_SIZE", 8, 1, 200));
    options.max_waiters = static_cast<std::size_t>(env.integer("DB_MAX_WAITERS", 256, 0, 100000));
    options.acquire_timeout = env.duration("DB_ACQUIRE_TIMEOUT", std::chrono::milliseconds(1000));
    options.query_timeout = env.duration("DB_QUERY_TIMEOUT", std::chrono::milliseconds(2000));
    options.connect_timeout = env.duration("DB_CONNECT_TIMEOUT", std::chrono::milliseconds(2000));
    return options;
}

http::Handler with_database_errors(http::Handler handler) {
    return [handler = std::move(handler)](http::RequestContext& context) -> boost::asio::awaitable<http::Response> {
        std::optional<http::Response> refusal;
        try {
            co_return co_await handler(context);
        } catch (const db::DbError& e) {
            using Kind = db::DbError::Kind;
            if (e.kind() != Kind::unavailable && e.kind() != Kind::timeout && e.kind() != Kind::pool_exhausted &&
                e.kind() != Kind::serialization) {
                throw;
            }
            log::warn("database unavailable for request", {{"error.type", db::to_string(e.kind())},
                                                           {"error.message", std::string_view(e.what())},
                                                           {"http.route", context.route}});
            refusal = http::problem(http::Status::service_unavailable,
                                    "the database is unavailable; nothing was changed, try again shortly");
            refusal->set(http::beast_http::field::retry_after, "1");
        }
        co_return std::move(*refusal);
    };
}

}  // namespace vigie::service
