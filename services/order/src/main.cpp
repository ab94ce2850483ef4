// The order service: orders and their state machine. `order serve` (default) runs it; `order migrate` applies its
// SQL migrations. Configuration comes from the environment: see docs/configuration.md.
#include <iostream>

#include "kit/db/migrate.hpp"
#include "kit/service/authenticate.hpp"
#include "kit/service/database.hpp"
#include "kit/service/service.hpp"
#include "order_api.hpp"

namespace {

namespace asio = boost::asio;
using namespace vigie;

constexpr const char* kUsage = R"(usage: order [serve | migrate | --help]
  serve    run the order service (default)
  migrate  apply the SQL migrations in MIGRATIONS_DIR to DATABASE_URL, then exit
)";

int serve(const config::Env& env) {
    auto service_config = service::ServiceConfig::from_env(env, "order", 8082, 9082);
    auto pool_options = service::database_options(env, "orders");
    auto authenticator = service::Authenticator::from_env(env);
    auto user_url = env.string("USER_SERVICE_URL", "http://127.0.0.1:8081");
    auto user_endpoint = http::parse_http_endpoint(user_url);
    if (!user_endpoint) {
        throw config::ConfigError("USER_SERVICE_URL", "must look like http://host:port (got '" + user_url + "')");
    }
    order::UserDirectory::Options directory_options;
    directory_options.attempt_timeout = env.duration("USER_SERVICE_TIMEOUT", std::chrono::milliseconds(1000));
    directory_options.max_attempts = static_cast<int>(env.integer("USER_SERVICE_ATTEMPTS", 3, 1, 10));

    service::Service service(service_config);
    db::Pool pool(service.io().get_executor(), pool_options, &service.tracer());
    http::ClientOptions client_options;
    client_options.service = "order";
    client_options.upstream = "user";
    client_options.host = user_endpoint->host;
    client_options.port = user_endpoint->port;
    http::Client user_client(service.io().get_executor(), client_options, &service.tracer());
    order::UserDirectory users(user_client, directory_options);
    order::OrderStore store(pool);
    order::OrderApi api(store, users, authenticator);
    api.add_routes(service.api());
    service.faults().set_slow_query_action(
        [&pool](std::chrono::milliseconds duration, const trace::SpanContext& parent) -> asio::awaitable<void> {
            std::vector<std::optional<std::string>> params{std::to_string(duration.count())};
            co_await pool.query("fault_slow_query", "SELECT pg_sleep($1::float8 / 1000)", std::move(params), &parent);
        });
    service.add_readiness_check("database", [&pool]() { return pool.ping(); });
    service.start();
    return service.run();
}

}  // namespace

int main(int argc, char** argv) {
    std::string command = argc > 1 ? argv[1] : "serve";
    try {
        auto env = vigie::config::Env::process();
        if (command == "serve") {
            return serve(env);
        }
        if (command == "migrate") {
            vigie::db::migrate(env.secret("DATABASE_URL"), env.string("MIGRATIONS_DIR", VIGIE_ORDER_MIGRATIONS),
                               std::cout);
            return 0;
        }
        if (command == "--help" || command == "-h") {
            std::cout << kUsage;
            return 0;
        }
        std::cerr << "order: unknown command '" << command << "'\n" << kUsage;
        return 2;
    } catch (const vigie::config::ConfigError& e) {
        std::cerr << "order: configuration error: " << e.what() << '\n';
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "order: " << e.what() << '\n';
        return 1;
    }
}
