#include "gateway_config.hpp"

namespace vigie::gateway {

namespace {

/// Where a replica's admin listener is when not configured: every Vigie service puts it 1000 ports above its API.
constexpr std::uint16_t kAdminPortOffset = 1000;

std::vector<http::Endpoint> endpoint_list(const std::string& variable, const std::string& text) {
    auto endpoints = http::parse_endpoint_list(text);
    if (!endpoints) {
        throw config::ConfigError(variable,
                                  "must be a comma-separated list of http://host:port URLs (got '" + text + "')");
    }
    return std::move(*endpoints);
}

}  // namespace

std::vector<http::UpstreamInstance> upstream_instances(const config::Env& env, const std::string& urls_variable,
                                                       const std::string& admin_urls_variable,
                                                       const std::string& default_urls) {
    auto api = endpoint_list(urls_variable, env.string(urls_variable, default_urls));
    std::vector<http::UpstreamInstance> instances;
    auto admin_text = env.string(admin_urls_variable, "");
    if (!admin_text.empty()) {
        auto admin = endpoint_list(admin_urls_variable, admin_text);
        if (admin.size() != api.size()) {
            throw config::ConfigError(admin_urls_variable,
                                      "must list as many URLs as " + urls_variable + ", in the same order");
        }
        for (std::size_t i = 0; i < api.size(); ++i) {
            instances.push_back({api[i], admin[i]});
        }
        return instances;
    }
    for (const auto& endpoint : api) {
        if (endpoint.port > 65535 - kAdminPortOffset) {
            throw config::ConfigError(admin_urls_variable, "must be set: the admin port of " + endpoint.host + ":" +
                                                               std::to_string(endpoint.port) + " cannot be derived");
        }
        http::Endpoint admin{endpoint.host, static_cast<std::uint16_t>(endpoint.port + kAdminPortOffset)};
        instances.push_back({endpoint, admin});
    }
    return instances;
}

GatewayConfig GatewayConfig::from_env(const config::Env& env) {
    GatewayConfig config;
    http::UpstreamOptions common;
    common.service = "gateway";
    common.health_interval = env.duration("HEALTH_CHECK_INTERVAL", std::chrono::seconds(1));
    common.health_timeout = env.duration("HEALTH_CHECK_TIMEOUT", std::chrono::milliseconds(500));
    if (common.health_interval.count() == 0 || common.health_timeout.count() == 0) {
        throw config::ConfigError("HEALTH_CHECK_INTERVAL", "and HEALTH_CHECK_TIMEOUT must be positive");
    }
    common.connect_timeout = env.duration("UPSTREAM_CONNECT_TIMEOUT", std::chrono::milliseconds(500));
    common.max_idle = static_cast<std::size_t>(env.integer("UPSTREAM_MAX_IDLE", 128, 0, 100000));
    common.max_attempts = static_cast<unsigned>(env.integer("RETRY_MAX_ATTEMPTS", 3, 1, 10));
    common.retry_budget.ratio = env.number("RETRY_BUDGET_RATIO", 0.2, 0.0, 1.0);
    common.retry_budget.min_retries = static_cast<unsigned>(env.integer("RETRY_BUDGET_MIN", 10, 0, 1000000));
    common.breaker.failure_threshold = static_cast<unsigned>(env.integer("BREAKER_FAILURES", 5, 1, 1000));
    common.breaker.open_duration = env.duration("BREAKER_OPEN_DURATION", std::chrono::seconds(2));
    common.breaker.max_open_duration = env.duration("BREAKER_MAX_OPEN_DURATION", std::chrono::seconds(30));

    config.users = common;
    config.users.name = "user";
    config.users.instances =
        upstream_instances(env, "USER_SERVICE_URLS", "USER_SERVICE_ADMIN_URLS", "http://127.0.0.1:8081");
    config.orders = common;
    config.orders.name = "order";
    config.orders.instances =
        upstream_instances(env, "ORDER_SERVICE_URLS", "ORDER_SERVICE_ADMIN_URLS", "http://127.0.0.1:8082");

    config.jwt_public_key_file = env.string("JWT_PUBLIC_KEY_FILE");
    config.jwt_issuer = env.string("JWT_ISSUER", "vigie");
    config.rate_limit.rate = env.number("RATE_LIMIT_RPS", 100.0, 0.0, 1e9);
    config.rate_limit.burst = env.number("RATE_LIMIT_BURST", 200.0, 1.0, 1e9);
    config.rate_limit.max_clients = static_cast<std::size_t>(env.integer("RATE_LIMIT_CLIENTS", 100000, 2, 100000000));
    config.read_timeout = env.duration("UPSTREAM_READ_TIMEOUT", std::chrono::seconds(3));
    config.read_try_timeout = env.duration("UPSTREAM_READ_TRY_TIMEOUT", std::chrono::seconds(1));
    config.write_timeout = env.duration("UPSTREAM_WRITE_TIMEOUT", std::chrono::seconds(8));
    config.write_try_timeout = env.duration("UPSTREAM_WRITE_TRY_TIMEOUT", std::chrono::seconds(4));
    for (auto [name, value] : {std::pair{"UPSTREAM_READ_TIMEOUT", config.read_timeout},
                               std::pair{"UPSTREAM_WRITE_TIMEOUT", config.write_timeout}}) {
        if (value.count() == 0) {
            throw config::ConfigError(name, "must be positive");
        }
    }
    config.max_headers = static_cast<std::size_t>(env.integer("HTTP_MAX_HEADERS", 100, 8, 10000));
    config.token_cache_size = static_cast<std::size_t>(env.integer("TOKEN_CACHE_SIZE", 10000, 2, 10000000));
    config.summary_orders = static_cast<int>(env.integer("SUMMARY_ORDERS", 5, 1, 100));
    return config;
}

}  // namespace vigie::gateway
