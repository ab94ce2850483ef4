#include "order_api.hpp"

#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include "kit/http/json_body.hpp"
#include "kit/http/problem.hpp"
#include "kit/http/query.hpp"
#include "kit/service/authenticate.hpp"
#include "kit/service/database.hpp"
#include "kit/service/ids.hpp"

namespace vigie::order {

namespace asio = boost::asio;
using http::Status;

namespace {

nlohmann::json to_json(const Order& order) {
    return {{"id", order.id},
            {"user_id", order.user_id},
            {"status", order.status},
            {"items", order.items},
            {"total_cents", order.total_cents},
            {"created_at", order.created_at},
            {"updated_at", order.updated_at}};
}

/// SHA-256 of the canonical items, to recognise a replay that carries a different body.
std::string fingerprint(const nlohmann::json& items) {
    auto text = items.dump();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(length * 2);
    for (unsigned int i = 0; i < length; ++i) {
        hex += kHex[digest[i] >> 4];
        hex += kHex[digest[i] & 0xF];
    }
    return hex;
}

/// The order in the path if the caller may see it; 404 otherwise (another user's order is not disclosed).
bool may_access(const auth::Claims& claims, const Order& order) {
    return service::is_admin(claims) || claims.subject == order.user_id;
}

}  // namespace

void OrderApi::add_routes(http::Router& router) {
    auto bind = [this](auto member) {
        return service::with_database_errors(
            [this, member](http::RequestContext& context) { return (this->*member)(context); });
    };
    router.add(http::Verb::post, "/api/v1/orders", bind(&OrderApi::create));
    router.add(http::Verb::get, "/api/v1/orders", bind(&OrderApi::list));
    router.add(http::Verb::get, "/api/v1/orders/{id}", bind(&OrderApi::get));
    router.add(http::Verb::post, "/api/v1/orders/{id}/status", bind(&OrderApi::change_status));
}

asio::awaitable<http::Response> OrderApi::create(http::RequestContext& context) {
    auto claims = authenticator_.authenticate(context);
    auto key = checked_idempotency_key(context.request["Idempotency-Key"]);
    auto body = http::parse_json_object(context.request);
    http::JsonFields fields(body);
    const auto& raw_items = fields.array("items", 1, kMaxItems);
    fields.finish();
    std::int64_t total = 0;
    auto items = parse_items(raw_items, total);
    nlohmann::json stored = nlohmann::json::array();
    for (const auto& item : items) {
        stored.push_back({{"sku", item.sku}, {"quantity", item.quantity}, {"unit_price_cents", item.unit_price_cents}});
    }

    auto answer = co_await users_.check(claims.subject, context.request[http::beast_http::field::authorization],
                                        context.deadline, context.span);
    switch (answer) {
        case UserDirectory::Answer::exists:
            break;
        case UserDirectory::Answer::missing:
            co_return http::problem(Status::unprocessable_entity, "the ordering user does not exist any more");
        case UserDirectory::Answer::unauthorized:
            co_return http::problem(Status::unauthorized, "the user service refused the token");
        case UserDirectory::Answer::unavailable: {
            auto response = http::problem(Status::service_unavailable,
                                          "the user service is unavailable; nothing was changed, try again");
            response.set(http::beast_http::field::retry_after, "1");
            co_return response;
        }
    }

    auto hash = fingerprint(stored);
    auto result = co_await store_.create(claims.subject, stored, total, key, hash, context.span);
    if (result.replayed && result.order.request_hash != hash) {
        co_return http::problem(Status::unprocessable_entity,
                                "this Idempotency-Key was already used with a different request body");
    }
    auto response = http::json_response(Status::created, to_json(result.order));
    response.set(http::beast_http::field::location, "/api/v1/orders/" + result.order.id);
    if (result.replayed) {
        response.set("Idempotent-Replayed", "true");
    }
    co_return response;
}

asio::awaitable<http::Response> OrderApi::get(http::RequestContext& context) {
    auto claims = authenticator_.authenticate(context);
    auto id = std::string(context.params.get("id"));
    if (!service::is_uuid(id)) {
        co_return http::problem(Status::not_found, "no such order");
    }
    auto order = co_await store_.find(id, context.span);
    if (!order || !may_access(claims, *order)) {
        co_return http::problem(Status::not_found, "no such order");
    }
    co_return http::json_response(Status::ok, to_json(*order));
}

asio::awaitable<http::Response> OrderApi::list(http::RequestContext& context) {
    auto claims = authenticator_.authenticate(context);
    http::QueryParams query(context.query, {"user_id", "limit", "cursor"});
    auto limit = query.integer("limit", 20, 1, 100);
    std::optional<std::string> user_id;
    if (auto requested = query.get("user_id")) {
        if (!service::is_uuid(*requested)) {
            co_return http::problem(Status::bad_request, "query parameter 'user_id' must be a user id");
        }
        user_id = std::string(*requested);
    }
    if (!service::is_admin(claims)) {
        if (user_id && *user_id != claims.subject) {
            co_return http::problem(Status::forbidden, "you may only list your own orders");
        }
        user_id = claims.subject;
    }
    std::optional<std::string> cursor;
    if (auto text = query.get("cursor")) {
        if (!valid_cursor(*text)) {
            co_return http::problem(Status::bad_request, "query parameter 'cursor' is not a cursor from this API");
        }
        cursor = std::string(*text);
    }
    auto orders = co_await store_.list(user_id, cursor, limit + 1, context.span);
    nlohmann::json next = nullptr;
    if (static_cast<std::int64_t>(orders.size()) > limit) {
        orders.pop_back();
        next = orders.back().cursor;
    }
    nlohmann::json items = nlohmann::json::array();
    for (const auto& order : orders) {
        items.push_back(to_json(order));
    }
    co_return http::json_response(Status::ok, {{"items", std::move(items)}, {"next_cursor", next}});
}

asio::awaitable<http::Response> OrderApi::change_status(http::RequestContext& context) {
    auto claims = authenticator_.authenticate(context);
    auto id = std::string(context.params.get("id"));
    auto body = http::parse_json_object(context.request);
    http::JsonFields fields(body);
    auto status_text = fields.string("status", 1, 32);
    fields.finish();
    auto target = parse_status(status_text);
    if (!target) {
        co_return http::problem(Status::bad_request, "field 'status' must be one of pending, paid, shipped, cancelled");
    }
    if (!service::is_uuid(id)) {
        co_return http::problem(Status::not_found, "no such order");
    }
    auto order = co_await store_.find(id, context.span);
    if (!order || !may_access(claims, *order)) {
        co_return http::problem(Status::not_found, "no such order");
    }
    auto moved = co_await store_.move(id, *target, context.span);
    if (!moved) {
        // Re-read: the status may have changed since, but the answer names the state that blocked the move.
        auto current = co_await store_.find(id, context.span);
        co_return http::problem(Status::conflict, "an order cannot go from '" +
                                                      (current ? current->status : order->status) + "' to '" +
                                                      std::string(to_string(*target)) + "'");
    }
    co_return http::json_response(Status::ok, to_json(*moved));
}

}  // namespace vigie::order
