// The user service: users, sign-up and login (JWT issuer). `user serve` (default) runs it; `user migrate` applies
// its SQL migrations. Configuration comes from the environment: see docs/configuration.md.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <iostream>
#include <optional>

#include "kit/db/migrate.hpp"
#include "kit/service/authenticate.hpp"
#include "kit/service/database.hpp"
#include "kit/service/service.hpp"
#include "user_api.hpp"
#include "validation.hpp"

namespace {

namespace asio = boost::asio;
using namespace vigie;

constexpr const char* kUsage = R"(usage: user [serve | migrate | --help]
  serve    run the user service (default)
  migrate  apply the SQL migrations in MIGRATIONS_DIR to DATABASE_URL, then exit
)";

/// Makes the configured account an admin, retrying until the database answers (the service starts without it).
/// The password is hashed on a worker thread, not before start: argon2id would delay readiness by tens of ms. A full
/// hashing queue (HASH_MAX_PENDING) is retried like a database error.
asio::awaitable<void> bootstrap_admin(asio::io_context& io, user::UserStore& store, user::UserApi& api,
                                      std::string email, std::string password, bool& done) {
    std::optional<std::string> password_hash;
    asio::steady_timer timer(io);
    while (!done) {
        try {
            if (!password_hash) {
                // Named: GCC 12 mishandles non-trivial temporaries that live across a co_await.
                auto hashing = api.hash(password);
                password_hash = co_await std::move(hashing);
            }
            co_await store.upsert_admin(email, *password_hash, trace::SpanContext{});
            done = true;
            log::info("admin account ready", {{"user.email", email}});
            break;
        } catch (const std::exception& e) {
            log::warn("admin bootstrap failed, retrying", {{"error.message", std::string_view(e.what())}});
        }
        timer.expires_after(std::chrono::seconds(1));
        co_await timer.async_wait(asio::use_awaitable);
    }
}

/// The dummy hash logins with unknown e-mails are checked against (a readiness condition), retried while the
/// hashing queue is full.
asio::awaitable<void> prepare_password_hashing(asio::io_context& io, user::UserApi& api) {
    asio::steady_timer timer(io);
    while (!api.dummy_hash_ready()) {
        try {
            co_await api.prepare_dummy_hash();
        } catch (const std::exception& e) {
            log::warn("dummy hash postponed", {{"error.message", std::string_view(e.what())}});
        }
        timer.expires_after(std::chrono::milliseconds(100));
        co_await timer.async_wait(asio::use_awaitable);
    }
}

int serve(const config::Env& env) {
    auto service_config = service::ServiceConfig::from_env(env, "user", 8081, 9081);
    auto pool_options = service::database_options(env, "users");
    auto issuer = env.string("JWT_ISSUER", "vigie");
    auto ttl = std::chrono::duration_cast<std::chrono::seconds>(env.duration("JWT_TTL", std::chrono::minutes(15)));
    auto signer = auth::TokenSigner::from_pem_file(env.string("JWT_PRIVATE_KEY_FILE"), issuer, ttl);
    auto authenticator = service::Authenticator::from_env(env);
    auth::PasswordCost cost;
    cost.opslimit = static_cast<unsigned long long>(env.integer("PASSWORD_HASH_OPSLIMIT", 2, 1, 10));
    cost.memlimit =
        static_cast<std::size_t>(env.integer("PASSWORD_HASH_MEMLIMIT_KIB", 19 * 1024, 8, 1024 * 1024)) * 1024;
    auto admin_email = env.string("ADMIN_EMAIL", "");
    auto admin_password = admin_email.empty() ? std::optional<std::string>() : env.optional_secret("ADMIN_PASSWORD");
    if (!admin_email.empty() && (!admin_password || admin_password->size() < user::kMinPasswordLength)) {
        throw config::ConfigError("ADMIN_PASSWORD", "must be set (at least 8 characters) when ADMIN_EMAIL is set");
    }
    if (!admin_email.empty() && !user::valid_email(admin_email)) {
        throw config::ConfigError("ADMIN_EMAIL", "is not a valid e-mail address");
    }

    service::Service service(service_config);
    db::Pool pool(service.io().get_executor(), pool_options, &service.tracer());
    service::WorkerPool workers(static_cast<std::size_t>(env.integer("HASH_THREADS", 2, 1, 64)),
                                static_cast<std::size_t>(env.integer("HASH_MAX_PENDING", 64, 1, 100000)));
    user::UserStore store(pool);
    user::UserApi api(store, signer, authenticator, workers, cost);
    api.add_routes(service.api());
    service.faults().set_slow_query_action(
        [&pool](std::chrono::milliseconds duration, const trace::SpanContext& parent) -> asio::awaitable<void> {
            std::vector<std::optional<std::string>> params{std::to_string(duration.count())};
            co_await pool.query("fault_slow_query", "SELECT pg_sleep($1::float8 / 1000)", std::move(params), &parent);
        });
    service.add_readiness_check("database", [&pool]() { return pool.ping(); });

    bool admin_ready = admin_email.empty();
    if (!admin_email.empty()) {
        service.add_readiness_check("admin_account",
                                    [&admin_ready]() -> asio::awaitable<bool> { co_return admin_ready; });
        asio::co_spawn(service.io(),
                       bootstrap_admin(service.io(), store, api, admin_email, std::move(*admin_password), admin_ready),
                       asio::detached);
    }
    service.add_readiness_check("password_hashing",
                                [&api]() -> asio::awaitable<bool> { co_return api.dummy_hash_ready(); });
    asio::co_spawn(service.io(), prepare_password_hashing(service.io(), api), asio::detached);
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
            vigie::db::migrate(env.secret("DATABASE_URL"), env.string("MIGRATIONS_DIR", VIGIE_USER_MIGRATIONS),
                               std::cout);
            return 0;
        }
        if (command == "--help" || command == "-h") {
            std::cout << kUsage;
            return 0;
        }
        std::cerr << "user: unknown command '" << command << "'\n" << kUsage;
        return 2;
    } catch (const vigie::config::ConfigError& e) {
        std::cerr << "user: configuration error: " << e.what() << '\n';
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "user: " << e.what() << '\n';
        return 1;
    }
}
