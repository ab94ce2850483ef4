#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "kit/config/config.hpp"
#include "kit/http/rate_limit.hpp"
#include "kit/http/upstream.hpp"

namespace vigie::gateway {

/// Everything the gateway reads from the environment besides the settings every service shares
/// (service::ServiceConfig). Parsed once at start-up; a malformed value stops the process naming the variable.
///
///   USER_SERVICE_URLS, ORDER_SERVICE_URLS   comma-separated http://host:port of each replica's API
///   USER_SERVICE_ADMIN_URLS, ...            the same replicas' admin listeners, in the same order, probed on
///                                           GET /readyz; default: each API URL with its port + 1000 (the
///                                           8081 → 9081 convention of every Vigie service)
///   HEALTH_CHECK_INTERVAL (1s), HEALTH_CHECK_TIMEOUT (500ms)
///   JWT_PUBLIC_KEY_FILE, JWT_ISSUER (vigie)
///   RATE_LIMIT_RPS (100; 0 = off), RATE_LIMIT_BURST (200), RATE_LIMIT_CLIENTS (100000)
///   UPSTREAM_READ_TIMEOUT (3s), UPSTREAM_READ_TRY_TIMEOUT (1s)     reads: whole call / one attempt
///   UPSTREAM_WRITE_TIMEOUT (8s), UPSTREAM_WRITE_TRY_TIMEOUT (4s)   writes; per attempt only when retryable
///   UPSTREAM_CONNECT_TIMEOUT (500ms), UPSTREAM_MAX_IDLE (128 per replica)
///   RETRY_MAX_ATTEMPTS (3), RETRY_BUDGET_RATIO (0.2), RETRY_BUDGET_MIN (10 per 10 s)
///   BREAKER_FAILURES (5), BREAKER_OPEN_DURATION (2s), BREAKER_MAX_OPEN_DURATION (30s)
///   HTTP_MAX_HEADERS (100), TOKEN_CACHE_SIZE (10000), SUMMARY_ORDERS (5)
struct GatewayConfig {
    http::UpstreamOptions users;
    http::UpstreamOptions orders;
    std::string jwt_public_key_file;
    std::string jwt_issuer = "vigie";
    http::RateLimitOptions rate_limit;
    std::chrono::milliseconds read_timeout{3000};
    std::chrono::milliseconds read_try_timeout{1000};
    std::chrono::milliseconds write_timeout{8000};
    std::chrono::milliseconds write_try_timeout{4000};
    std::size_t max_headers = 100;
    std::size_t token_cache_size = 10000;
    int summary_orders = 5;

    static GatewayConfig from_env(const config::Env& env);
};

/// The replicas of one upstream from its API URL list and optional admin URL list (see GatewayConfig); throws
/// config::ConfigError naming the variable.
std::vector<http::UpstreamInstance> upstream_instances(const config::Env& env, const std::string& urls_variable,
                                                       const std::string& admin_urls_variable,
                                                       const std::string& default_urls);

}  // namespace vigie::gateway
