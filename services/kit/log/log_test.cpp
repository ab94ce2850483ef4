#include "kit/log/log.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace vigie::log {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

// 2024-02-29T23:59:58.007Z, a leap day, to exercise the date arithmetic.
constexpr Clock::time_point kAt{std::chrono::milliseconds{1709251198007}};

std::string json_string(std::string_view text) {
    std::string out;
    append_json_string(out, text);
    return out;
}

std::string timestamp(Clock::time_point at) {
    std::string out;
    append_timestamp(out, at);
    return out;
}

/// Captures lines written by write() for the lifetime of the object.
class CapturedLines {
  public:
    CapturedLines() {
        set_sink_for_test([this](std::string_view line) {
            const std::lock_guard lock(mutex_);
            lines_.emplace_back(line);
        });
    }
    ~CapturedLines() {
        set_sink_for_test({});
        init("vigie", Level::info);
    }
    std::vector<std::string> lines() {
        const std::lock_guard lock(mutex_);
        return lines_;
    }

  private:
    std::mutex mutex_;
    std::vector<std::string> lines_;
};

TEST(LogLevel, ParsesTheFourNamesOnly) {
    EXPECT_EQ(parse_level("debug"), Level::debug);
    EXPECT_EQ(parse_level("info"), Level::info);
    EXPECT_EQ(parse_level("warn"), Level::warn);
    EXPECT_EQ(parse_level("error"), Level::error);
    EXPECT_EQ(parse_level("INFO"), std::nullopt);
    EXPECT_EQ(parse_level("warning"), std::nullopt);
    EXPECT_EQ(parse_level(""), std::nullopt);
    EXPECT_EQ(to_string(Level::warn), "warn");
}

TEST(LogFormat, ExactLineWithEcsFieldsInOrder) {
    const std::string line =
        format_line(kAt, Level::warn, "user", "slow query",
                    {{Field{"trace.id", "4bf92f3577b34da6a3ce929d0e0e4736"}, Field{"event.duration", 1500000},
                      Field{"ratio", 0.25}, Field{"retry", false}}});
    EXPECT_EQ(line,
              "{\"@timestamp\":\"2024-02-29T23:59:58.007Z\",\"log.level\":\"warn\",\"service.name\":\"user\","
              "\"message\":\"slow query\",\"trace.id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
              "\"event.duration\":1500000,\"ratio\":0.25,\"retry\":false}\n");
}

TEST(LogFormat, LineIsValidJsonWithDottedKeysFlat) {
    const std::string path = "/api/v1/users/\"42\"\n";
    const Field fields[] = {{"url.path", path}, {"http.response.status_code", 503}, {"big", std::uint64_t{1} << 63}};
    const auto parsed = nlohmann::json::parse(format_line(kAt, Level::error, "gateway", "upstream failed", fields));
    EXPECT_EQ(parsed.at("url.path"), path);
    EXPECT_EQ(parsed.at("http.response.status_code"), 503);
    EXPECT_EQ(parsed.at("big"), INT64_MAX) << "unsigned values above INT64_MAX are clamped, not wrapped negative";
    EXPECT_EQ(parsed.at("log.level"), "error");
    EXPECT_FALSE(parsed.contains("url")) << "dotted keys stay flat";
}

TEST(LogFormat, TimestampIsRfc3339UtcWithMilliseconds) {
    EXPECT_EQ(timestamp(Clock::time_point{}), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(timestamp(kAt), "2024-02-29T23:59:58.007Z");
    EXPECT_EQ(timestamp(Clock::time_point{std::chrono::milliseconds{951782400999}}), "2000-02-29T00:00:00.999Z");
    EXPECT_EQ(timestamp(Clock::time_point{std::chrono::milliseconds{-1}}), "1969-12-31T23:59:59.999Z");
    // Sub-millisecond precision is truncated, never rounded up into the next second.
    EXPECT_EQ(timestamp(Clock::time_point{std::chrono::milliseconds{1000}} - 1us), "1970-01-01T00:00:00.999Z");
}

TEST(LogJson, EscapesQuotesBackslashesAndControlCharacters) {
    EXPECT_EQ(json_string("plain"), "\"plain\"");
    EXPECT_EQ(json_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
    EXPECT_EQ(json_string("\n\r\t\b\f"), "\"\\n\\r\\t\\b\\f\"");
    EXPECT_EQ(json_string(std::string_view("\x00\x01\x1f", 3)), "\"\\u0000\\u0001\\u001f\"");
    EXPECT_EQ(json_string("\x7f"), "\"\x7f\"") << "DEL needs no escaping in JSON";
}

TEST(LogJson, PassesValidUtf8ThroughUnchanged) {
    const std::string text = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x9A\x80 \xF4\x8F\xBF\xBF";  // café € 🚀 U+10FFFF
    EXPECT_EQ(json_string(text), "\"" + text + "\"");
}

TEST(LogJson, ReplacesInvalidUtf8SoTheLineStaysParseable) {
    const std::string replacement = "\xEF\xBF\xBD";
    EXPECT_EQ(json_string("a\xFF"
                          "b"),
              "\"a" + replacement + "b\"");
    EXPECT_EQ(json_string("\xC3"), "\"" + replacement + "\"") << "truncated sequence";
    EXPECT_EQ(json_string("\xF0\x9F\x9A!"), "\"" + replacement + "!\"") << "truncated: one U+FFFD, not three";
    EXPECT_EQ(json_string("\x80\x80"), "\"" + replacement + replacement + "\"") << "stray continuation bytes";
    EXPECT_EQ(json_string("\xC0\xAF"), "\"" + replacement + replacement + "\"") << "overlong encoding";
    EXPECT_EQ(json_string("\xED\xA0\x80"), "\"" + replacement + replacement + replacement + "\"") << "surrogate";
    EXPECT_EQ(json_string("\xF4\x90\x80\x80"), "\"" + replacement + replacement + replacement + replacement + "\"")
        << "above U+10FFFF";
    const auto parsed = nlohmann::json::parse(format_line(kAt, Level::info, "s", "bad \xE2\x82 utf8", {}));
    EXPECT_EQ(parsed.at("message"), "bad " + replacement + " utf8");
}

TEST(LogJson, NonFiniteNumbersBecomeNull) {
    std::string out;
    append_json_number(out, std::numeric_limits<double>::quiet_NaN());
    out.push_back(' ');
    append_json_number(out, -std::numeric_limits<double>::infinity());
    out.push_back(' ');
    append_json_number(out, 1e21);
    EXPECT_EQ(out, "null null 1e+21");
}

TEST(LogWrite, FiltersBelowMinimumLevelAndUsesServiceName) {
    CapturedLines captured;
    init("order", Level::warn);
    EXPECT_FALSE(enabled(Level::info));
    EXPECT_TRUE(enabled(Level::error));
    info("dropped");
    debug("dropped too");
    warn("kept", {{"order.id", "o-1"}});
    error("kept too");
    const auto lines = captured.lines();
    ASSERT_EQ(lines.size(), 2u);
    const auto first = nlohmann::json::parse(lines[0]);
    EXPECT_EQ(first.at("service.name"), "order");
    EXPECT_EQ(first.at("message"), "kept");
    EXPECT_EQ(first.at("order.id"), "o-1");
    EXPECT_EQ(first.at("log.level"), "warn");
    EXPECT_EQ(lines[0].back(), '\n');
    EXPECT_EQ(lines[0].find('\n'), lines[0].size() - 1) << "exactly one line per record";
    EXPECT_EQ(nlohmann::json::parse(lines[1]).at("log.level"), "error");
}

TEST(LogWrite, LinesFromManyThreadsNeverInterleave) {
    CapturedLines captured;
    init("user", Level::debug);
    constexpr int kThreads = 4;
    constexpr int kPerThread = 500;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([t] {
            for (int i = 0; i < kPerThread; ++i) {
                info("request done", {{"thread", t}, {"i", i}});
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    const auto lines = captured.lines();
    ASSERT_EQ(lines.size(), static_cast<std::size_t>(kThreads * kPerThread));
    std::vector<int> next(kThreads, 0);
    for (const auto& line : lines) {
        const auto parsed = nlohmann::json::parse(line);
        const int t = parsed.at("thread");
        EXPECT_EQ(parsed.at("i"), next[t]++) << "per-thread order is kept";
    }
}

}  // namespace
}  // namespace vigie::log
