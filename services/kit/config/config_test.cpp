#include "kit/config/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace vigie::config {
namespace {

using std::chrono::milliseconds;

// Runs `body` and returns the ConfigError it threw, failing the test when it threw nothing.
template <class F>
ConfigError error_of(F&& body) {
    try {
        body();
    } catch (const ConfigError& e) {
        return e;
    }
    ADD_FAILURE() << "expected a ConfigError";
    return ConfigError("none", "none");
}

class TempFile {
  public:
    explicit TempFile(const std::string& content) {
        path_ = std::filesystem::temp_directory_path() /
                ("vigie_config_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
        std::ofstream(path_, std::ios::binary) << content;
    }
    ~TempFile() { std::filesystem::remove(path_); }
    std::string path() const { return path_.string(); }

  private:
    static inline int counter_ = 0;
    std::filesystem::path path_;
};

TEST(ConfigString, ReturnsValueFallbackOrThrowsNamingTheVariable) {
    auto env = Env::from_map({{"NAME", "vigie"}, {"EMPTY", ""}});
    EXPECT_EQ(env.string("NAME"), "vigie");
    EXPECT_EQ(env.string("MISSING", "dflt"), "dflt");
    EXPECT_EQ(env.string("EMPTY", "dflt"), "dflt");  // empty counts as unset
    auto e = error_of([&] { env.string("MISSING"); });
    EXPECT_EQ(e.variable(), "MISSING");
    EXPECT_NE(std::string(e.what()).find("MISSING"), std::string::npos);
}

TEST(ConfigInteger, ParsesAndChecksRange) {
    auto env = Env::from_map({{"A", "42"},
                              {"B", "-7"},
                              {"C", "+5"},
                              {"BIG", "1000"},
                              {"BAD", "12abc"},
                              {"SPACE", " 1"},
                              {"HUGE", "99999999999999999999999"}});
    EXPECT_EQ(env.integer("A", 0, 0, 100), 42);
    EXPECT_EQ(env.integer("B", 0, -10, 10), -7);
    EXPECT_EQ(env.integer("C", 0, 0, 10), 5);
    EXPECT_EQ(env.integer("UNSET", 9, 0, 10), 9);
    EXPECT_EQ(error_of([&] { env.integer("BIG", 0, 0, 999); }).variable(), "BIG");
    EXPECT_EQ(error_of([&] { env.integer("BAD", 0, 0, 999); }).variable(), "BAD");
    EXPECT_EQ(error_of([&] { env.integer("SPACE", 0, 0, 999); }).variable(), "SPACE");
    EXPECT_EQ(error_of([&] { env.integer("HUGE", 0, 0, 999); }).variable(), "HUGE");
    const std::string message = error_of([&] { env.integer("BIG", 0, 0, 999); }).what();
    EXPECT_NE(message.find("[0, 999]"), std::string::npos) << message;
    EXPECT_NE(message.find("\"1000\""), std::string::npos) << message;
}

TEST(ConfigNumber, ParsesFiniteInRange) {
    auto env =
        Env::from_map({{"R", "0.25"}, {"E", "1e-3"}, {"NAN", "nan"}, {"INF", "inf"}, {"OUT", "1.5"}, {"X", "x"}});
    EXPECT_DOUBLE_EQ(env.number("R", 0, 0, 1), 0.25);
    EXPECT_DOUBLE_EQ(env.number("E", 0, 0, 1), 0.001);
    EXPECT_DOUBLE_EQ(env.number("UNSET", 0.5, 0, 1), 0.5);
    EXPECT_EQ(error_of([&] { env.number("NAN", 0, 0, 1); }).variable(), "NAN");
    EXPECT_EQ(error_of([&] { env.number("INF", 0, 0, 1e300); }).variable(), "INF");
    EXPECT_EQ(error_of([&] { env.number("OUT", 0, 0, 1); }).variable(), "OUT");
    EXPECT_EQ(error_of([&] { env.number("X", 0, 0, 1); }).variable(), "X");
}

TEST(ConfigBoolean, AcceptsOnlyFourSpellings) {
    auto env =
        Env::from_map({{"T", "true"}, {"F", "false"}, {"ONE", "1"}, {"ZERO", "0"}, {"YES", "yes"}, {"UP", "TRUE"}});
    EXPECT_TRUE(env.boolean("T", false));
    EXPECT_FALSE(env.boolean("F", true));
    EXPECT_TRUE(env.boolean("ONE", false));
    EXPECT_FALSE(env.boolean("ZERO", true));
    EXPECT_TRUE(env.boolean("UNSET", true));
    EXPECT_EQ(error_of([&] { env.boolean("YES", false); }).variable(), "YES");
    EXPECT_EQ(error_of([&] { env.boolean("UP", false); }).variable(), "UP");
}

TEST(ConfigDuration, ParsesUnits) {
    auto env = Env::from_map({{"MS", "250ms"},
                              {"S", "2s"},
                              {"M", "1m"},
                              {"H", "1h"},
                              {"BARE", "250"},
                              {"FRACTION", "1.5s"},
                              {"NEG", "-1s"},
                              {"UNIT", "5d"},
                              {"OVER", "9999999999999999h"}});
    EXPECT_EQ(env.duration("MS", milliseconds(0)), milliseconds(250));
    EXPECT_EQ(env.duration("S", milliseconds(0)), milliseconds(2000));
    EXPECT_EQ(env.duration("M", milliseconds(0)), milliseconds(60000));
    EXPECT_EQ(env.duration("H", milliseconds(0)), milliseconds(3600000));
    EXPECT_EQ(env.duration("UNSET", milliseconds(7)), milliseconds(7));
    for (const char* name : {"BARE", "FRACTION", "NEG", "UNIT", "OVER"}) {
        EXPECT_EQ(error_of([&] { env.duration(name, milliseconds(0)); }).variable(), name);
    }
}

TEST(ConfigPort, AcceptsZeroToMax) {
    auto env = Env::from_map({{"P0", "0"}, {"P", "8080"}, {"PMAX", "65535"}, {"PBIG", "65536"}, {"PNEG", "-1"}});
    EXPECT_EQ(env.port("P0", 1), 0);
    EXPECT_EQ(env.port("P", 1), 8080);
    EXPECT_EQ(env.port("PMAX", 1), 65535);
    EXPECT_EQ(env.port("UNSET", 9080), 9080);
    EXPECT_EQ(error_of([&] { env.port("PBIG", 1); }).variable(), "PBIG");
    EXPECT_EQ(error_of([&] { env.port("PNEG", 1); }).variable(), "PNEG");
}

TEST(ConfigSecret, ReadsLiteralOrFileStrippingOneNewline) {
    TempFile file("s3cret\n\n");
    TempFile crlf("pw\r\n");
    auto env = Env::from_map({{"LIT", "plain"}, {"FROM_FILE_FILE", file.path()}, {"CRLF_FILE", crlf.path()}});
    EXPECT_EQ(env.secret("LIT"), "plain");
    EXPECT_EQ(env.secret("FROM_FILE"), "s3cret\n");  // exactly one newline stripped
    EXPECT_EQ(env.secret("CRLF"), "pw");
    EXPECT_EQ(env.optional_secret("FROM_FILE"), "s3cret\n");
    EXPECT_EQ(env.optional_secret("NOPE"), std::nullopt);
}

TEST(ConfigSecret, RejectsBothMissingEmptyAndUnreadable) {
    TempFile file("x");
    TempFile empty("\n");
    auto env = Env::from_map({{"BOTH", "a"},
                              {"BOTH_FILE", file.path()},
                              {"EMPTYF_FILE", empty.path()},
                              {"GONE_FILE", "/nonexistent/vigie/secret"}});
    EXPECT_EQ(error_of([&] { env.secret("BOTH"); }).variable(), "BOTH");
    EXPECT_EQ(error_of([&] { env.optional_secret("BOTH"); }).variable(), "BOTH");
    EXPECT_EQ(error_of([&] { env.secret("MISSING"); }).variable(), "MISSING");
    EXPECT_EQ(error_of([&] { env.secret("EMPTYF"); }).variable(), "EMPTYF_FILE");
    const auto gone = error_of([&] { env.secret("GONE"); });
    EXPECT_EQ(gone.variable(), "GONE_FILE");
    EXPECT_NE(std::string(gone.what()).find("/nonexistent/vigie/secret"), std::string::npos);
}

TEST(ConfigProcess, ReadsRealEnvironment) {
    // A variable name no one else uses; set and cleared here only.
    ::setenv("VIGIE_CONFIG_TEST_PORT", "1234", 1);
    EXPECT_EQ(Env::process().port("VIGIE_CONFIG_TEST_PORT", 1), 1234);
    ::unsetenv("VIGIE_CONFIG_TEST_PORT");
    EXPECT_EQ(Env::process().port("VIGIE_CONFIG_TEST_PORT", 1), 1);
}

TEST(ConfigLookup, AcceptsAnyFunction) {
    int calls = 0;
    Env env([&](std::string_view name) -> std::optional<std::string> {
        ++calls;
        return name == "X" ? std::optional<std::string>("3") : std::nullopt;
    });
    EXPECT_EQ(env.integer("X", 0, 0, 5), 3);
    EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace vigie::config
