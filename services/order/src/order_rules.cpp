#include "order_rules.hpp"

#include <array>
#include <nlohmann/json.hpp>

#include "kit/http/json_body.hpp"
#include "kit/http/problem.hpp"

namespace vigie::order {

namespace {

constexpr std::array<std::string_view, 4> kNames = {"pending", "paid", "shipped", "cancelled"};

bool valid_sku(std::string_view sku) {
    if (sku.empty() || sku.size() > 64) {
        return false;
    }
    for (char c : sku) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
            return false;
        }
    }
    return true;
}

}  // namespace

std::optional<OrderStatus> parse_status(std::string_view text) {
    for (std::size_t i = 0; i < kNames.size(); ++i) {
        if (kNames[i] == text) {
            return static_cast<OrderStatus>(i);
        }
    }
    return std::nullopt;
}

std::string_view to_string(OrderStatus status) {
    return kNames[static_cast<std::size_t>(status)];
}

std::vector<OrderStatus> allowed_sources(OrderStatus target) {
    switch (target) {
        case OrderStatus::paid:
            return {OrderStatus::pending};
        case OrderStatus::shipped:
            return {OrderStatus::paid};
        case OrderStatus::cancelled:
            return {OrderStatus::pending, OrderStatus::paid};
        case OrderStatus::pending:
            return {};
    }
    return {};
}

bool can_move(OrderStatus from, OrderStatus to) {
    for (auto source : allowed_sources(to)) {
        if (source == from) {
            return true;
        }
    }
    return false;
}

std::vector<OrderItem> parse_items(const nlohmann::json& items, std::int64_t& total_cents) {
    std::vector<OrderItem> result;
    result.reserve(items.size());
    total_cents = 0;
    for (std::size_t i = 0; i < items.size(); ++i) {
        const auto& item = items[i];
        auto where = "items[" + std::to_string(i) + "]: ";
        if (!item.is_object()) {
            throw http::ProblemError(http::Status::bad_request, where + "must be an object");
        }
        OrderItem parsed;
        try {
            http::JsonFields fields(item);
            parsed.sku = fields.string("sku", 1, 64);
            parsed.quantity = fields.integer("quantity", 1, kMaxQuantity);
            parsed.unit_price_cents = fields.integer("unit_price_cents", 0, kMaxUnitPriceCents);
            fields.finish();
        } catch (const http::ProblemError& e) {
            throw http::ProblemError(e.status(), where + e.what());
        }
        if (!valid_sku(parsed.sku)) {
            throw http::ProblemError(http::Status::bad_request,
                                     where + "field 'sku' may only hold letters, digits, '-', '_' and '.'");
        }
        std::int64_t line = 0;
        if (__builtin_mul_overflow(parsed.quantity, parsed.unit_price_cents, &line) ||
            __builtin_add_overflow(total_cents, line, &total_cents) || total_cents > kMaxTotalCents) {
            throw http::ProblemError(http::Status::bad_request, "the order total is larger than allowed");
        }
        result.push_back(std::move(parsed));
    }
    return result;
}

std::string checked_idempotency_key(std::string_view key) {
    if (key.empty() || key.size() > 255) {
        throw http::ProblemError(http::Status::bad_request,
                                 "an Idempotency-Key header of 1 to 255 characters is required");
    }
    for (char c : key) {
        if (c < 0x21 || c > 0x7E) {
            throw http::ProblemError(http::Status::bad_request,
                                     "the Idempotency-Key header may only hold visible ASCII characters");
        }
    }
    return std::string(key);
}

}  // namespace vigie::order
