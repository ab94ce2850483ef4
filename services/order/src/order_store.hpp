#pragma once

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kit/db/pool.hpp"
#include "kit/trace/trace.hpp"
#include "order_rules.hpp"

namespace vigie::order {

struct Order {
    std::string id;
    std::string user_id;
    std::string status;
    nlohmann::json items;
    std::int64_t total_cents = 0;
    std::string request_hash;
    std::string created_at;  ///< RFC 3339, UTC
    std::string updated_at;
    std::string cursor;  ///< opaque position of this order in "newest first" listings
};

/// Outcome of a create with an Idempotency-Key.
struct CreateResult {
    Order order;
    bool replayed = false;  ///< the key was used before: `order` is the one created then
};

/// The SQL of the order service, one named query per operation.
class OrderStore final {
  public:
    explicit OrderStore(db::Pool& pool) : pool_(pool) {}

    boost::asio::awaitable<CreateResult> create(const std::string& user_id, const nlohmann::json& items,
                                                std::int64_t total_cents, const std::string& idempotency_key,
                                                const std::string& request_hash, const trace::SpanContext& parent);
    boost::asio::awaitable<std::optional<Order>> find(const std::string& id, const trace::SpanContext& parent);
    /// Newest first, `limit` at most, after `cursor` (from Order::cursor); all users when `user_id` is empty.
    boost::asio::awaitable<std::vector<Order>> list(const std::optional<std::string>& user_id,
                                                    const std::optional<std::string>& cursor, std::int64_t limit,
                                                    const trace::SpanContext& parent);
    /// Moves the order to `target` if its current status allows it; nullopt when it does not (or no such order).
    boost::asio::awaitable<std::optional<Order>> move(const std::string& id, OrderStatus target,
                                                      const trace::SpanContext& parent);

  private:
    db::Pool& pool_;
};

/// True when `cursor` has the form OrderStore produces ("<microseconds>_<uuid>").
bool valid_cursor(std::string_view cursor);

}  // namespace vigie::order
