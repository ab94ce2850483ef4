#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <memory>

#include "admission.hpp"
#include "gateway_config.hpp"
#include "kit/http/router.hpp"
#include "kit/http/upstream.hpp"
#include "routes.hpp"

namespace vigie::trace {
class Tracer;
}

namespace vigie::gateway {

/// The public entry of Vigie: forwards the user and order APIs to their replicas after checking tokens and rate
/// limits, and serves the aggregation route GET /api/v1/users/{id}/summary. Single-threaded, on the service's
/// io_context.
class Gateway final {
  public:
    Gateway(const boost::asio::any_io_executor& executor, GatewayConfig config, auth::TokenVerifier verifier,
            trace::Tracer* tracer);

    /// Registers every public route.
    void add_routes(http::Router& router);
    /// Starts probing the upstream replicas.
    void start();
    void stop();

    /// Ready when every upstream has at least one replica whose readiness probe passed.
    bool ready() const { return users_.healthy_count() > 0 && orders_.healthy_count() > 0; }
    http::UpstreamGroup& users() { return users_; }
    http::UpstreamGroup& orders() { return orders_; }

  private:
    boost::asio::awaitable<http::Response> forward(http::RequestContext& context, const RouteSpec& route);
    boost::asio::awaitable<http::Response> summary(http::RequestContext& context);
    /// Header-count limit, token and rate limit; the refusal to send, if any.
    std::optional<http::Response> admit(const http::RequestContext& context, bool requires_token);
    http::UpstreamGroup& group(Upstream upstream) { return upstream == Upstream::user ? users_ : orders_; }

    boost::asio::any_io_executor executor_;
    GatewayConfig config_;
    Admission admission_;
    http::UpstreamGroup users_;
    http::UpstreamGroup orders_;
};

/// The problem+json answer for an upstream call that produced no response: 503 with Retry-After (no replica
/// available), 504 (deadline), 502 (failure).
http::Response upstream_problem(const http::UpstreamError& error, std::string_view upstream);

}  // namespace vigie::gateway
