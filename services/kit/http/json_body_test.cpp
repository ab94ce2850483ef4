#include "kit/http/json_body.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "kit/http/problem.hpp"

namespace vigie::http {
namespace {

constexpr auto kInt64Max = std::numeric_limits<std::int64_t>::max();
constexpr auto kInt64Min = std::numeric_limits<std::int64_t>::min();

/// The status of the ProblemError `action` throws, or 0 when it throws none.
template <class Action>
unsigned problem_status(Action action) {
    try {
        action();
    } catch (const ProblemError& e) {
        return static_cast<unsigned>(e.status());
    }
    return 0;
}

Request json_request(std::string content_type, std::string body) {
    Request request{Verb::post, "/x", 11};
    if (!content_type.empty()) {
        request.set(beast_http::field::content_type, content_type);
    }
    request.body() = std::move(body);
    request.prepare_payload();
    return request;
}

TEST(ParseJsonObject, AcceptsAnObject) {
    auto value = parse_json_object_text(R"({"name": "Ada", "tags": [1, 2]})");
    EXPECT_EQ(value["name"], "Ada");
    EXPECT_EQ(value["tags"].size(), 2U);
}

TEST(ParseJsonObject, DeepNestingIsRefusedBeforeParsing) {
    std::string deep = "{\"a\":" + std::string(10000, '[') + std::string(10000, ']') + "}";
    EXPECT_EQ(problem_status([&] { parse_json_object_text(deep); }), 400U);
    std::string unbalanced(100000, '[');
    EXPECT_EQ(problem_status([&] { parse_json_object_text(unbalanced); }), 400U);
    std::string objects;
    for (int i = 0; i < 10000; ++i) {
        objects += "{\"a\":";
    }
    EXPECT_EQ(problem_status([&] { parse_json_object_text(objects); }), 400U);
}

TEST(ParseJsonObject, DepthLimitIsInclusive) {
    // kMaxJsonDepth levels are fine, one more is not.
    std::string ok = std::string(kMaxJsonDepth - 1, '[');
    ok = "{\"a\":" + ok + std::string(kMaxJsonDepth - 1, ']') + "}";
    EXPECT_NO_THROW(parse_json_object_text(ok));
    std::string too_deep = "{\"a\":" + std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']') + "}";
    EXPECT_EQ(problem_status([&] { parse_json_object_text(too_deep); }), 400U);
    EXPECT_NO_THROW(parse_json_object_text(too_deep, kMaxJsonDepth + 1));
}

TEST(ParseJsonObject, BracketsInsideStringsDoNotCount) {
    std::string text = R"({"a": ")" + std::string(100, '[') + R"(\"{{{{", "b": "\\"})";
    auto value = parse_json_object_text(text);
    EXPECT_EQ(value["b"], "\\");
}

TEST(ParseJsonObject, RefusesInvalidJsonAndUtf8) {
    for (std::string_view text : {"", "{", "{\"a\":1,}", "{'a':1}", "{\"a\":1} x", "{\"a\":\"\xFF\"}",
                                  "{\"a\":\"\xC3\"}", "{\"a\":\"\xED\xA0\x80\"}", "{\"a\":1e400}", "{\"a\":NaN}",
                                  "{\"a\":\"\\ud800\"}", "{\"a\":01}", "{/*c*/\"a\":1}"}) {
        SCOPED_TRACE(text);
        EXPECT_EQ(problem_status([&] { parse_json_object_text(text); }), 400U);
    }
}

TEST(ParseJsonObject, RefusesNonObjects) {
    for (std::string_view text : {"[]", "1", "\"a\"", "null", "true", "[{\"a\":1}]"}) {
        SCOPED_TRACE(text);
        EXPECT_EQ(problem_status([&] { parse_json_object_text(text); }), 400U);
    }
}

TEST(ParseJsonObject, ContentTypeRules) {
    EXPECT_NO_THROW(parse_json_object(json_request("application/json", "{}")));
    EXPECT_NO_THROW(parse_json_object(json_request("application/json; charset=utf-8", "{}")));
    EXPECT_NO_THROW(parse_json_object(json_request("Application/JSON;charset=UTF-8", "{}")));
    EXPECT_NO_THROW(parse_json_object(json_request("application/json ; charset=utf-8", "{}")));
    for (std::string content_type : {"", "text/plain", "application/json-patch+json", "application/jsonx",
                                     "application/problem+json", "multipart/form-data", "application/x-json"}) {
        SCOPED_TRACE(content_type);
        EXPECT_EQ(problem_status([&] { parse_json_object(json_request(content_type, "{}")); }), 415U);
    }
    EXPECT_EQ(problem_status([] { parse_json_object(json_request("application/json", "[]")); }), 400U);
}

TEST(JsonFields, RequiredOptionalAndNull) {
    auto object = nlohmann::json::parse(R"({"name": "Ada", "nick": null, "age": 36})");
    JsonFields fields(object);
    EXPECT_EQ(fields.string("name", 1, 10), "Ada");
    EXPECT_EQ(fields.optional_string("nick", 1, 10), std::nullopt);
    EXPECT_EQ(fields.optional_string("absent", 1, 10), std::nullopt);
    EXPECT_EQ(fields.integer("age", 0, 200), 36);
    EXPECT_NO_THROW(fields.finish());

    JsonFields missing(object);
    EXPECT_EQ(problem_status([&] { missing.string("email", 1, 10); }), 400U);
    EXPECT_EQ(problem_status([&] { missing.string("nick", 1, 10); }), 400U);  // null is not a value
    EXPECT_EQ(problem_status([&] { missing.integer("nick", 0, 1); }), 400U);
}

TEST(JsonFields, UnknownFieldsAreRefusedByFinish) {
    auto object = nlohmann::json::parse(R"({"name": "Ada", "admin": true})");
    JsonFields fields(object);
    fields.string("name", 1, 10);
    try {
        fields.finish();
        FAIL() << "finish() accepted an unknown field";
    } catch (const ProblemError& e) {
        EXPECT_EQ(e.status(), Status::bad_request);
        EXPECT_NE(std::string(e.what()).find("'admin'"), std::string::npos);
    }
}

TEST(JsonFields, WrongTypes) {
    auto object = nlohmann::json::parse(R"({"s": 1, "i": "1", "b": true, "f": 1.5, "a": {}, "o": []})");
    JsonFields fields(object);
    EXPECT_EQ(problem_status([&] { fields.string("s", 0, 10); }), 400U);
    EXPECT_EQ(problem_status([&] { fields.integer("i", 0, 10); }), 400U);
    EXPECT_EQ(problem_status([&] { fields.integer("b", 0, 10); }), 400U);
    EXPECT_EQ(problem_status([&] { fields.integer("f", 0, 10); }), 400U);
    EXPECT_EQ(problem_status([&] { fields.array("a", 0, 10); }), 400U);
    EXPECT_EQ(problem_status([&] { fields.string("o", 0, 10); }), 400U);
}

TEST(JsonFields, IntegerBounds) {
    auto read = [](const std::string& text, std::int64_t min, std::int64_t max) {
        auto object = nlohmann::json::parse("{\"n\": " + text + "}");
        JsonFields fields(object);
        return fields.integer("n", min, max);
    };
    EXPECT_EQ(read("5", 1, 5), 5);
    EXPECT_EQ(read("1", 1, 5), 1);
    EXPECT_EQ(read("-3", -5, 5), -3);
    EXPECT_EQ(read("9223372036854775807", 0, kInt64Max), kInt64Max);
    EXPECT_EQ(read("-9223372036854775808", kInt64Min, 0), kInt64Min);
    EXPECT_EQ(problem_status([&] { read("6", 1, 5); }), 400U);
    EXPECT_EQ(problem_status([&] { read("0", 1, 5); }), 400U);
    EXPECT_EQ(problem_status([&] { read("-6", -5, 5); }), 400U);
    EXPECT_EQ(problem_status([&] { read("9223372036854775808", 0, kInt64Max); }), 400U);
    EXPECT_EQ(problem_status([&] { read("18446744073709551615", 0, kInt64Max); }), 400U);
    // uint64 max must not wrap to -1 and slip into a negative range.
    EXPECT_EQ(problem_status([&] { read("18446744073709551615", -10, -1); }), 400U);
    EXPECT_EQ(problem_status([&] { read("18446744073709551615", kInt64Min, kInt64Max); }), 400U);
    EXPECT_EQ(problem_status([&] { read("1.0", 0, 5); }), 400U);
    EXPECT_EQ(problem_status([&] { read("1e2", 0, 1000); }), 400U);
    EXPECT_EQ(problem_status([&] { read("2.5", 0, 5); }), 400U);
    EXPECT_EQ(problem_status([&] { read("-0.0", -5, 5); }), 400U);
}

TEST(JsonFields, StringLengthInCodePoints) {
    // "é" is two bytes, "😀" four: lengths count characters, not bytes.
    auto object = nlohmann::json::parse("{\"a\": \"\xC3\xA9\xC3\xA9\xC3\xA9\", \"b\": \"\xF0\x9F\x98\x80\"}");
    JsonFields fields(object);
    EXPECT_EQ(fields.string("a", 3, 3), "\xC3\xA9\xC3\xA9\xC3\xA9");
    EXPECT_EQ(fields.string("b", 1, 1), "\xF0\x9F\x98\x80");
    JsonFields strict(object);
    EXPECT_EQ(problem_status([&] { strict.string("a", 4, 10); }), 400U);
    EXPECT_EQ(problem_status([&] { strict.string("a", 0, 2); }), 400U);
    EXPECT_EQ(utf8_length(""), 0U);
    EXPECT_EQ(utf8_length("abc"), 3U);
    EXPECT_EQ(utf8_length("\xE2\x82\xAC"
                          "1"),
              2U);
}

TEST(JsonFields, NulIsRefused) {
    auto object = nlohmann::json::parse(R"({"a": "x\u0000y", "b": "x\u0000"})");
    JsonFields fields(object);
    EXPECT_EQ(problem_status([&] { fields.string("a", 0, 10); }), 400U);
    EXPECT_EQ(problem_status([&] { fields.optional_string("b", 0, 10); }), 400U);
}

TEST(JsonFields, ArrayBounds) {
    auto object = nlohmann::json::parse(R"({"a": [1, 2, 3]})");
    JsonFields fields(object);
    EXPECT_EQ(fields.array("a", 1, 3).size(), 3U);
    JsonFields strict(object);
    EXPECT_EQ(problem_status([&] { strict.array("a", 4, 10); }), 400U);
    EXPECT_EQ(problem_status([&] { strict.array("a", 0, 2); }), 400U);
    EXPECT_EQ(problem_status([&] { strict.array("missing", 0, 2); }), 400U);
}

}  // namespace
}  // namespace vigie::http
