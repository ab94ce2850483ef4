#include "forwarding.hpp"

#include <gtest/gtest.h>

#include "gateway_config.hpp"
#include "routes.hpp"

namespace vigie::gateway {
namespace {

using http::beast_http::field;

struct Inbound {
    http::Request request{http::Verb::post, "/api/v1/orders?x=1", 11};
    http::RequestContext context{request, {}, {}, {}, {}, "req-1", {}, {}, "192.0.2.7"};
};

TEST(UpstreamRequest, KeepsEndToEndHeadersAndBody) {
    Inbound in;
    in.request.set(field::authorization, "Bearer abc");
    in.request.set(field::content_type, "application/json");
    in.request.set("Idempotency-Key", "k-1");
    in.request.set("tracestate", "vendor=1");
    in.request.body() = R"({"items":[]})";
    auto out = upstream_request(in.context);
    EXPECT_EQ(out.method(), http::Verb::post);
    EXPECT_EQ(out.target(), "/api/v1/orders?x=1");
    EXPECT_EQ(out[field::authorization], "Bearer abc");
    EXPECT_EQ(out[field::content_type], "application/json");
    EXPECT_EQ(out["Idempotency-Key"], "k-1");
    EXPECT_EQ(out["tracestate"], "vendor=1");
    EXPECT_EQ(out.body(), R"({"items":[]})");
}

TEST(UpstreamRequest, DropsHopByHopAndConnectionNamedHeaders) {
    Inbound in;
    in.request.set(field::connection, "keep-alive, X-Secret-Hop");
    in.request.set(field::keep_alive, "timeout=5");
    in.request.set(field::te, "trailers");
    in.request.set(field::trailer, "Expires");
    in.request.set(field::upgrade, "websocket");
    in.request.set(field::proxy_authorization, "Basic eA==");
    in.request.set(field::proxy_connection, "keep-alive");
    in.request.set(field::transfer_encoding, "chunked");
    in.request.set("X-Secret-Hop", "1");
    in.request.set("X-Kept", "2");
    auto out = upstream_request(in.context);
    for (auto name : {"Connection", "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Authorization", "Proxy-Connection",
                      "Transfer-Encoding", "X-Secret-Hop"}) {
        EXPECT_EQ(out.count(name), 0u) << name;
    }
    EXPECT_EQ(out["X-Kept"], "2");
}

TEST(UpstreamRequest, GatewaySetsIdsAndForwardedForItself) {
    Inbound in;
    in.request.set("X-Request-Id", "spoofed");
    in.request.set("X-Forwarded-For", "10.0.0.1");
    in.request.set(field::forwarded, "for=10.0.0.1");
    in.request.set("X-Request-Timeout-Ms", "999999");
    in.request.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    in.request.set(field::host, "evil.example");
    in.request.set(field::content_length, "5");
    auto out = upstream_request(in.context);
    EXPECT_EQ(out["X-Request-Id"], "req-1");  // the id the server settled on (it keeps a well-formed client id)
    EXPECT_EQ(out["X-Forwarded-For"], "192.0.2.7");
    EXPECT_EQ(out.count(field::forwarded), 0u);
    EXPECT_EQ(out.count("X-Request-Timeout-Ms"), 0u);  // the client sets the gateway's remaining budget
    EXPECT_EQ(out.count("traceparent"), 0u);           // the client sets the gateway's own span
    EXPECT_EQ(out.count(field::host), 0u);
    EXPECT_EQ(out.count(field::content_length), 0u);
}

TEST(StripHopByHop, RemovesConnectionHeadersFromResponses) {
    http::Response response{http::Status::ok, 11};
    response.set(field::connection, "close, X-Internal");
    response.set(field::keep_alive, "timeout=5");
    response.set(field::transfer_encoding, "chunked");
    response.set(field::content_length, "2");
    response.set("X-Internal", "1");
    response.set(field::content_type, "application/json");
    response.set(field::location, "/api/v1/orders/1");
    strip_hop_by_hop(response);
    EXPECT_EQ(response.count(field::connection), 0u);
    EXPECT_EQ(response.count(field::keep_alive), 0u);
    EXPECT_EQ(response.count(field::transfer_encoding), 0u);
    EXPECT_EQ(response.count(field::content_length), 0u);
    EXPECT_EQ(response.count("X-Internal"), 0u);
    EXPECT_EQ(response[field::content_type], "application/json");
    EXPECT_EQ(response[field::location], "/api/v1/orders/1");
}

TEST(Routes, RetriesOnlyWhatIsSafeToRepeat) {
    auto find = [](http::Verb method, std::string_view pattern) -> const RouteSpec& {
        for (const auto& route : routes()) {
            if (route.method == method && route.pattern == pattern) {
                return route;
            }
        }
        throw std::runtime_error("no route " + std::string(pattern));
    };
    http::Request plain{http::Verb::post, "/", 11};
    http::Request keyed{http::Verb::post, "/", 11};
    keyed.set("Idempotency-Key", "k");
    EXPECT_TRUE(retryable(find(http::Verb::get, "/api/v1/users/{id}"), plain));
    EXPECT_TRUE(retryable(find(http::Verb::delete_, "/api/v1/users/{id}"), plain));
    EXPECT_FALSE(retryable(find(http::Verb::patch, "/api/v1/users/{id}"), plain));
    EXPECT_FALSE(retryable(find(http::Verb::post, "/api/v1/orders"), plain));
    EXPECT_TRUE(retryable(find(http::Verb::post, "/api/v1/orders"), keyed));
    // The user service ignores Idempotency-Key: a second sign-up or login must never be sent on its strength.
    EXPECT_FALSE(retryable(find(http::Verb::post, "/api/v1/users"), keyed));
    EXPECT_FALSE(retryable(find(http::Verb::post, "/api/v1/auth/login"), keyed));
    EXPECT_FALSE(retryable(find(http::Verb::post, "/api/v1/orders/{id}/status"), keyed));
    for (const auto& route : routes()) {
        bool public_route = route.pattern == "/api/v1/auth/login" ||
                            (route.pattern == "/api/v1/users" && route.method == http::Verb::post);
        EXPECT_EQ(route.requires_token, !public_route) << route.pattern;
    }
}

TEST(GatewayConfig, DerivesAdminUrlsAndReadsEveryUpstream) {
    auto env = config::Env::from_map(
        {{"USER_SERVICE_URLS", "http://127.0.0.1:8081,http://127.0.0.1:8181"}, {"JWT_PUBLIC_KEY_FILE", "/dev/null"}});
    auto config = GatewayConfig::from_env(env);
    ASSERT_EQ(config.users.instances.size(), 2u);
    EXPECT_EQ(config.users.instances[1].api.port, 8181);
    ASSERT_TRUE(config.users.instances[1].admin);
    EXPECT_EQ(config.users.instances[1].admin->port, 9181);
    ASSERT_EQ(config.orders.instances.size(), 1u);
    EXPECT_EQ(config.orders.instances[0].api.port, 8082);
    EXPECT_EQ(config.users.name, "user");
    EXPECT_EQ(config.orders.name, "order");
    EXPECT_EQ(config.users.health_interval, std::chrono::seconds(1));
}

TEST(GatewayConfig, ExplicitAdminUrlsMustMatchTheReplicas) {
    auto good = config::Env::from_map({{"ORDER_SERVICE_URLS", "http://127.0.0.1:1000,http://127.0.0.1:1001"},
                                       {"ORDER_SERVICE_ADMIN_URLS", "http://127.0.0.1:2000, http://127.0.0.1:2001"},
                                       {"JWT_PUBLIC_KEY_FILE", "/dev/null"}});
    EXPECT_EQ(GatewayConfig::from_env(good).orders.instances[1].admin->port, 2001);
    auto mismatched = config::Env::from_map({{"ORDER_SERVICE_URLS", "http://127.0.0.1:1000,http://127.0.0.1:1001"},
                                             {"ORDER_SERVICE_ADMIN_URLS", "http://127.0.0.1:2000"},
                                             {"JWT_PUBLIC_KEY_FILE", "/dev/null"}});
    try {
        GatewayConfig::from_env(mismatched);
        ADD_FAILURE() << "expected ConfigError";
    } catch (const config::ConfigError& e) {
        EXPECT_EQ(e.variable(), "ORDER_SERVICE_ADMIN_URLS");
    }
    auto malformed =
        config::Env::from_map({{"USER_SERVICE_URLS", "https://127.0.0.1:8081"}, {"JWT_PUBLIC_KEY_FILE", "/dev/null"}});
    try {
        GatewayConfig::from_env(malformed);
        ADD_FAILURE() << "expected ConfigError";
    } catch (const config::ConfigError& e) {
        EXPECT_EQ(e.variable(), "USER_SERVICE_URLS");
    }
}

}  // namespace
}  // namespace vigie::gateway
