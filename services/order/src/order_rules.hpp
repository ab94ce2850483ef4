#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vigie::order {

/// The life of an order: pending → paid → shipped, or cancelled from pending or paid.
enum class OrderStatus { pending, paid, shipped, cancelled };

std::optional<OrderStatus> parse_status(std::string_view text);
std::string_view to_string(OrderStatus status);
/// The statuses an order may move from to reach `target` (empty for `pending`: nothing goes back to it).
std::vector<OrderStatus> allowed_sources(OrderStatus target);
bool can_move(OrderStatus from, OrderStatus to);

struct OrderItem {
    std::string sku;
    std::int64_t quantity;
    std::int64_t unit_price_cents;
};

inline constexpr std::size_t kMaxItems = 100;
inline constexpr std::int64_t kMaxQuantity = 10'000;
inline constexpr std::int64_t kMaxUnitPriceCents = 100'000'000;    // 1 million in currency units
inline constexpr std::int64_t kMaxTotalCents = 1'000'000'000'000;  // refused above, whatever the items

/// Validates the items of an order request (throws http::ProblemError 400 naming the offending item) and returns
/// them with their total, computed without overflow.
std::vector<OrderItem> parse_items(const nlohmann::json& items, std::int64_t& total_cents);

/// The Idempotency-Key header: 1 to 255 visible ASCII characters; throws 400 otherwise.
std::string checked_idempotency_key(std::string_view key);

}  // namespace vigie::order
