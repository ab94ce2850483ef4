#include "kit/http/query.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "kit/http/problem.hpp"

namespace vigie::http {
namespace {

/// The status of the ProblemError `action` throws, or 0 when it does not throw one.
template <class Action>
unsigned problem_status(Action action) {
    try {
        action();
    } catch (const ProblemError& e) {
        return static_cast<unsigned>(e.status());
    }
    return 0;
}

TEST(QueryParams, ReadsAllowedParameters) {
    QueryParams query("limit=10&cursor=abc-DEF_1.2~", {"limit", "cursor", "status"});
    EXPECT_EQ(query.get("limit"), "10");
    EXPECT_EQ(query.get("cursor"), "abc-DEF_1.2~");
    EXPECT_EQ(query.get("status"), std::nullopt);
    EXPECT_EQ(query.integer("limit", 20, 1, 100), 10);
    EXPECT_EQ(query.integer("status", 20, 1, 100), 20);
}

TEST(QueryParams, EmptyQueryAndEmptyPairs) {
    QueryParams empty("", {"a"});
    EXPECT_EQ(empty.get("a"), std::nullopt);
    QueryParams sparse("&&a=1&", {"a"});
    EXPECT_EQ(sparse.get("a"), "1");
    QueryParams flag("a", {"a"});
    EXPECT_EQ(flag.get("a"), "");
}

TEST(QueryParams, RefusesUnknownParameter) {
    EXPECT_EQ(problem_status([] { QueryParams("limit=1&debug=1", {"limit"}); }), 400U);
    EXPECT_EQ(problem_status([] { QueryParams("=1", {"limit"}); }), 400U);
    EXPECT_EQ(problem_status([] { QueryParams("LIMIT=1", {"limit"}); }), 400U);
}

TEST(QueryParams, RefusesRepeatedParameter) {
    EXPECT_EQ(problem_status([] { QueryParams("limit=1&limit=2", {"limit"}); }), 400U);
    EXPECT_EQ(problem_status([] { QueryParams("limit&limit", {"limit"}); }), 400U);
}

TEST(QueryParams, RefusesCharactersOutsideTheSafeSet) {
    for (std::string_view query : {"q=a%20b", "q=a+b", "q=a b", "q=<x>", "q='1'", "q=a=b", "q=\xC3\xA9", "q=a;b"}) {
        SCOPED_TRACE(query);
        EXPECT_EQ(problem_status([query] { QueryParams(query, {"q"}); }), 400U);
    }
}

TEST(QueryParams, IntegerBounds) {
    auto integer = [](std::string_view query, std::int64_t min, std::int64_t max) {
        return QueryParams(query, {"n"}).integer("n", 0, min, max);
    };
    EXPECT_EQ(integer("n=1", 1, 100), 1);
    EXPECT_EQ(integer("n=100", 1, 100), 100);
    EXPECT_EQ(integer("n=-5", -10, 10), -5);
    EXPECT_EQ(integer("n=9223372036854775807", 0, std::numeric_limits<std::int64_t>::max()),
              std::numeric_limits<std::int64_t>::max());
    for (std::string_view query : {"n=0", "n=101", "n=", "n=1.5", "n=1e2", "n=0x10", "n=10abc", "n=9223372036854775808",
                                   "n=99999999999999999999", "n=--1"}) {
        SCOPED_TRACE(query);
        EXPECT_EQ(problem_status([&] { integer(query, 1, 100); }), 400U);
    }
}

}  // namespace
}  // namespace vigie::http
