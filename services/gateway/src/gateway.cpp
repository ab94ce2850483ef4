#include "gateway.hpp"

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "forwarding.hpp"
#include "kit/http/problem.hpp"
#include "kit/http/query.hpp"
#include "kit/log/log.hpp"
#include "kit/service/ids.hpp"

namespace vigie::gateway {

namespace asio = boost::asio;
using http::Clock;
using http::Status;

http::Response upstream_problem(const http::UpstreamError& error, std::string_view upstream) {
    std::string name(upstream);
    switch (error.kind()) {
        case http::UpstreamError::Kind::unavailable: {
            auto response = http::problem(Status::service_unavailable,
                                          "the " + name + " service is unavailable, try again shortly");
            response.set(http::beast_http::field::retry_after, "1");
            return response;
        }
        case http::UpstreamError::Kind::timeout:
            return http::problem(Status::gateway_timeout, "the " + name + " service did not answer in time");
        case http::UpstreamError::Kind::failed:
            break;
    }
    return http::problem(Status::bad_gateway, "the " + name + " service failed to answer");
}

namespace {

/// Results of the aggregation's concurrent calls, shared by the calls and the handler that joins them.
struct FanOut {
    explicit FanOut(const asio::any_io_executor& executor) : wake(executor, Clock::time_point::max()) {}
    struct Result {
        std::optional<http::Response> response;
        std::optional<http::UpstreamError> error;
    };
    asio::steady_timer wake;  ///< cancelled when the last call completes: the join
    int pending = 0;
    std::array<Result, 2> results;
};

asio::awaitable<void> fetch(http::UpstreamGroup* group, http::Request request, http::CallOptions call,
                            trace::SpanContext parent, std::shared_ptr<FanOut> state, std::size_t slot) {
    try {
        http::Response response = co_await group->send(std::move(request), call, &parent);
        state->results[slot].response.emplace(std::move(response));
    } catch (const http::UpstreamError& e) {
        state->results[slot].error.emplace(e);
    } catch (const std::exception& e) {
        state->results[slot].error.emplace(http::UpstreamError::Kind::failed, e.what());
    }
    if (--state->pending == 0) {
        state->wake.cancel();
    }
}

/// A GET the gateway makes on the caller's behalf, with the caller's credentials and the request's ids.
http::Request sub_request(const http::RequestContext& context, const std::string& target) {
    http::Request request{http::Verb::get, target, 11};
    request.set(http::beast_http::field::authorization, context.request[http::beast_http::field::authorization]);
    request.set(http::beast_http::field::accept, "application/json");
    request.set("X-Request-Id", context.request_id);
    if (!context.client.empty()) {
        request.set("X-Forwarded-For", context.client);
    }
    return request;
}

}  // namespace

Gateway::Gateway(const asio::any_io_executor& executor, GatewayConfig config, auth::TokenVerifier verifier,
                 trace::Tracer* tracer)
    : executor_(executor),
      config_(std::move(config)),
      admission_(std::move(verifier), config_.rate_limit, config_.token_cache_size),
      users_(executor, config_.users, tracer),
      orders_(executor, config_.orders, tracer) {}

void Gateway::add_routes(http::Router& router) {
    for (const auto& route : routes()) {
        router.add(route.method, std::string(route.pattern),
                   [this, &route](http::RequestContext& context) { return forward(context, route); });
    }
    router.add(http::Verb::get, "/api/v1/users/{id}/summary",
               [this](http::RequestContext& context) { return summary(context); });
}

void Gateway::start() {
    users_.start();
    orders_.start();
}

void Gateway::stop() {
    users_.stop();
    orders_.stop();
}

std::optional<http::Response> Gateway::admit(const http::RequestContext& context, bool requires_token) {
    if (header_count(context.request) > config_.max_headers) {
        return http::problem(Status::request_header_fields_too_large,
                             "too many header fields (at most " + std::to_string(config_.max_headers) + ")");
    }
    auto now_unix =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    return admission_.admit(context, requires_token, Clock::now(), now_unix);
}

asio::awaitable<http::Response> Gateway::forward(http::RequestContext& context, const RouteSpec& route) {
    if (auto refusal = admit(context, route.requires_token)) {
        co_return std::move(*refusal);
    }
    bool read = route.method == http::Verb::get;
    bool retry = retryable(route, context.request);
    http::CallOptions call;
    call.deadline = std::min(context.deadline, Clock::now() + (read ? config_.read_timeout : config_.write_timeout));
    call.retryable = retry;
    if (retry) {
        call.try_timeout = read ? config_.read_try_timeout : config_.write_try_timeout;
    }
    auto& upstream = group(route.upstream);
    auto request = upstream_request(context);
    std::optional<http::Response> failure;
    try {
        http::Response response = co_await upstream.send(std::move(request), call, &context.span);
        strip_hop_by_hop(response);
        co_return response;
    } catch (const http::UpstreamError& e) {
        log::warn("upstream call failed", {{"upstream", upstream.name()},
                                           {"error.message", std::string_view(e.what())},
                                           {"http.route", context.route},
                                           {"http.request.id", std::string_view(context.request_id)}});
        failure = upstream_problem(e, upstream.name());
    }
    co_return std::move(*failure);
}

asio::awaitable<http::Response> Gateway::summary(http::RequestContext& context) {
    if (auto refusal = admit(context, true)) {
        co_return std::move(*refusal);
    }
    http::QueryParams query(context.query, {"limit"});
    auto limit = query.integer("limit", config_.summary_orders, 1, 100);
    auto id = std::string(context.params.get("id"));
    if (!service::is_uuid(id)) {
        co_return http::problem(Status::not_found, "no such user");
    }

    // Both calls start now and run concurrently; the handler resumes once both are done (each has a deadline).
    http::CallOptions call;
    call.deadline = std::min(context.deadline, Clock::now() + config_.read_timeout);
    call.try_timeout = config_.read_try_timeout;
    call.retryable = true;
    auto state = std::make_shared<FanOut>(executor_);
    state->pending = 2;
    auto user_request = sub_request(context, "/api/v1/users/" + id);
    auto orders_request = sub_request(context, "/api/v1/orders?user_id=" + id + "&limit=" + std::to_string(limit));
    asio::co_spawn(executor_, fetch(&users_, std::move(user_request), call, context.span, state, 0), asio::detached);
    asio::co_spawn(executor_, fetch(&orders_, std::move(orders_request), call, context.span, state, 1), asio::detached);
    while (state->pending > 0) {
        boost::system::error_code ignored;
        co_await state->wake.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }

    auto& user_result = state->results[0];
    if (user_result.error) {
        co_return upstream_problem(*user_result.error, "user");
    }
    auto& user_response = *user_result.response;
    if (user_response.result() != Status::ok) {
        // 401, 404 (unknown user, or someone else's), 5xx: the user service's answer is the summary's.
        strip_hop_by_hop(user_response);
        co_return std::move(user_response);
    }
    auto user = nlohmann::json::parse(user_response.body(), nullptr, false);
    if (user.is_discarded() || !user.is_object()) {
        co_return http::problem(Status::bad_gateway, "the user service sent an unreadable answer");
    }

    // Orders are secondary: without them the summary is still useful, so it is sent partial rather than failed.
    nlohmann::json body = {{"user", std::move(user)}};
    std::string missing;
    auto& orders_result = state->results[1];
    if (orders_result.error) {
        missing = orders_result.error->what();
    } else if (orders_result.response->result() != Status::ok) {
        missing = "the order service answered " + std::to_string(orders_result.response->result_int());
    } else {
        auto orders = nlohmann::json::parse(orders_result.response->body(), nullptr, false);
        if (!orders.is_object() || !orders.contains("items") || !orders["items"].is_array()) {
            missing = "the order service sent an unreadable answer";
        } else {
            body["orders"] = std::move(orders["items"]);
        }
    }
    body["partial"] = !missing.empty();
    if (!missing.empty()) {
        body["orders"] = nlohmann::json::array();
        log::warn("summary sent without orders", {{"error.message", std::string_view(missing)},
                                                  {"http.request.id", std::string_view(context.request_id)}});
    }
    co_return http::json_response(Status::ok, body);
}

}  // namespace vigie::gateway
