#include "order_rules.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kit/http/problem.hpp"

namespace vigie::order {

TEST(OrderStatus, FollowsTheStateMachine) {
    EXPECT_TRUE(can_move(OrderStatus::pending, OrderStatus::paid));
    EXPECT_TRUE(can_move(OrderStatus::paid, OrderStatus::shipped));
    EXPECT_TRUE(can_move(OrderStatus::pending, OrderStatus::cancelled));
    EXPECT_TRUE(can_move(OrderStatus::paid, OrderStatus::cancelled));
    EXPECT_FALSE(can_move(OrderStatus::pending, OrderStatus::shipped));
    EXPECT_FALSE(can_move(OrderStatus::shipped, OrderStatus::cancelled));
    EXPECT_FALSE(can_move(OrderStatus::cancelled, OrderStatus::paid));
    EXPECT_FALSE(can_move(OrderStatus::paid, OrderStatus::pending));
    EXPECT_FALSE(can_move(OrderStatus::shipped, OrderStatus::shipped));
}

TEST(OrderStatus, ParsesOnlyKnownNames) {
    EXPECT_EQ(parse_status("paid"), OrderStatus::paid);
    EXPECT_FALSE(parse_status("PAID"));
    EXPECT_FALSE(parse_status("refunded"));
    EXPECT_FALSE(parse_status(""));
    EXPECT_EQ(to_string(OrderStatus::cancelled), "cancelled");
}

TEST(ParseItems, ComputesTheTotal) {
    std::int64_t total = 0;
    auto items = parse_items(nlohmann::json::parse(R"([{"sku":"A-1","quantity":2,"unit_price_cents":150},
                                                      {"sku":"b_2","quantity":1,"unit_price_cents":0}])"),
                             total);
    ASSERT_EQ(items.size(), 2u);
    EXPECT_EQ(total, 300);
    EXPECT_EQ(items[0].sku, "A-1");
}

TEST(ParseItems, RefusesBadItems) {
    std::int64_t total = 0;
    for (const char* body :
         {R"([1])", R"([{"sku":"A","quantity":0,"unit_price_cents":1}])",
          R"([{"sku":"A","quantity":-1,"unit_price_cents":1}])", R"([{"sku":"A","quantity":1,"unit_price_cents":-5}])",
          R"([{"sku":"A","quantity":1.5,"unit_price_cents":1}])",
          R"([{"sku":"A","quantity":"1","unit_price_cents":1}])",
          R"([{"sku":"A","quantity":1,"unit_price_cents":1,"extra":true}])",
          R"([{"sku":"","quantity":1,"unit_price_cents":1}])", R"([{"sku":"a b","quantity":1,"unit_price_cents":1}])",
          R"([{"sku":"'; DROP TABLE orders;--","quantity":1,"unit_price_cents":1}])",
          R"([{"sku":"A","quantity":18446744073709551615,"unit_price_cents":1}])",
          R"([{"quantity":1,"unit_price_cents":1}])"}) {
        EXPECT_THROW(parse_items(nlohmann::json::parse(body), total), http::ProblemError) << body;
    }
}

TEST(ParseItems, RefusesTotalsAboveTheLimit) {
    nlohmann::json items = nlohmann::json::array();
    for (int i = 0; i < 100; ++i) {
        items.push_back({{"sku", "A"}, {"quantity", kMaxQuantity}, {"unit_price_cents", kMaxUnitPriceCents}});
    }
    std::int64_t total = 0;
    EXPECT_THROW(parse_items(items, total), http::ProblemError);
}

TEST(IdempotencyKey, AcceptsVisibleAsciiOnly) {
    EXPECT_EQ(checked_idempotency_key("abc-123"), "abc-123");
    EXPECT_THROW(checked_idempotency_key(""), http::ProblemError);
    EXPECT_THROW(checked_idempotency_key(std::string(256, 'k')), http::ProblemError);
    EXPECT_THROW(checked_idempotency_key("with space"), http::ProblemError);
    EXPECT_THROW(checked_idempotency_key("caf\xc3\xa9"), http::ProblemError);
}

}  // namespace vigie::order
