#include "order_store.hpp"

#include "kit/service/ids.hpp"

namespace vigie::order {

namespace {

constexpr std::string_view kColumns =
    "id::text, user_id::text, status, items::text, total_cents, request_hash, "
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "(extract(epoch FROM created_at) * 1000000)::bigint::text || '_' || id::text";

Order read_order(const db::Result& result, int row) {
    Order order;
    order.id = result.get<std::string>(row, 0);
    order.user_id = result.get<std::string>(row, 1);
    order.status = result.get<std::string>(row, 2);
    order.items = nlohmann::json::parse(result.get<std::string_view>(row, 3));
    order.total_cents = result.get<std::int64_t>(row, 4);
    order.request_hash = result.get<std::string>(row, 5);
    order.created_at = result.get<std::string>(row, 6);
    order.updated_at = result.get<std::string>(row, 7);
    order.cursor = result.get<std::string>(row, 8);
    return order;
}

std::optional<Order> first(const db::Result& result) {
    if (result.empty()) {
        return std::nullopt;
    }
    return read_order(result, 0);
}

}  // namespace

bool valid_cursor(std::string_view cursor) {
    auto underscore = cursor.find('_');
    if (underscore == std::string_view::npos || underscore == 0 || underscore > 19) {
        return false;
    }
    for (std::size_t i = 0; i < underscore; ++i) {
        if (!std::isdigit(static_cast<unsigned char>(cursor[i]))) {
            return false;
        }
    }
    return service::is_uuid(cursor.substr(underscore + 1));
}

boost::asio::awaitable<CreateResult> OrderStore::create(const std::string& user_id, const nlohmann::json& items,
                                                        std::int64_t total_cents, const std::string& idempotency_key,
                                                        const std::string& request_hash,
                                                        const trace::SpanContext& parent) {
    // One statement: either this request creates the order, or the key's earlier order comes back. Concurrent
    // requests with the same key serialize on the unique constraint, so exactly one order is ever created.
    static const std::string insert =
        "INSERT INTO orders (user_id, items, total_cents, idempotency_key, request_hash) "
        "VALUES ($1::uuid, $2::jsonb, $3, $4, $5) ON CONFLICT ON CONSTRAINT orders_idempotency_key DO NOTHING "
        "RETURNING " +
        std::string(kColumns);
    std::vector<std::optional<std::string>> params{user_id, items.dump(), std::to_string(total_cents), idempotency_key,
                                                   request_hash};
    auto created = co_await pool_.query("order_insert", insert, std::move(params), &parent);
    if (!created.empty()) {
        co_return CreateResult{read_order(created, 0), false};
    }
    static const std::string existing =
        "SELECT " + std::string(kColumns) + " FROM orders WHERE user_id = $1::uuid AND idempotency_key = $2";
    std::vector<std::optional<std::string>> lookup{user_id, idempotency_key};
    auto found = co_await pool_.query("order_by_idempotency_key", existing, std::move(lookup), &parent);
    if (found.empty()) {
        throw db::DbError(db::DbError::Kind::serialization, "idempotent order vanished between insert and select");
    }
    co_return CreateResult{read_order(found, 0), true};
}

boost::asio::awaitable<std::optional<Order>> OrderStore::find(const std::string& id, const trace::SpanContext& parent) {
    static const std::string sql = "SELECT " + std::string(kColumns) + " FROM orders WHERE id = $1::uuid";
    std::vector<std::optional<std::string>> params{id};
    co_return first(co_await pool_.query("order_by_id", sql, std::move(params), &parent));
}

boost::asio::awaitable<std::vector<Order>> OrderStore::list(const std::optional<std::string>& user_id,
                                                            const std::optional<std::string>& cursor,
                                                            std::int64_t limit, const trace::SpanContext& parent) {
    static const std::string sql =
        "SELECT " + std::string(kColumns) +
        " FROM orders WHERE ($1::uuid IS NULL OR user_id = $1::uuid) AND ($2::bigint IS NULL OR "
        "(created_at, id) < (to_timestamp($2::bigint / 1000000.0), $3::uuid)) "
        "ORDER BY created_at DESC, id DESC LIMIT $4";
    std::optional<std::string> micros;
    std::optional<std::string> after_id;
    if (cursor) {
        auto underscore = cursor->find('_');
        micros = cursor->substr(0, underscore);
        after_id = cursor->substr(underscore + 1);
    }
    std::vector<std::optional<std::string>> params{user_id, micros, after_id, std::to_string(limit)};
    auto result = co_await pool_.query("order_list", sql, std::move(params), &parent);
    std::vector<Order> orders;
    orders.reserve(static_cast<std::size_t>(result.rows()));
    for (int row = 0; row < result.rows(); ++row) {
        orders.push_back(read_order(result, row));
    }
    co_return orders;
}

boost::asio::awaitable<std::optional<Order>> OrderStore::move(const std::string& id, OrderStatus target,
                                                              const trace::SpanContext& parent) {
    std::string sources = "{";
    for (auto source : allowed_sources(target)) {
        if (sources.size() > 1) {
            sources += ',';
        }
        sources += to_string(source);
    }
    sources += '}';
    static const std::string sql =
        "UPDATE orders SET status = $2, updated_at = now() "
        "WHERE id = $1::uuid AND status = ANY($3::text[]) RETURNING " +
        std::string(kColumns);
    std::vector<std::optional<std::string>> params{id, std::string(to_string(target)), sources};
    co_return first(co_await pool_.query("order_status_update", sql, std::move(params), &parent));
}

}  // namespace vigie::order
