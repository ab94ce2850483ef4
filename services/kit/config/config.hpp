#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace vigie::config {

/// A missing or malformed configuration value; what() names the variable and says what was expected.
class ConfigError : public std::runtime_error {
  public:
    ConfigError(std::string variable, const std::string& problem);

    /// The environment variable at fault (e.g. "USER_DB_PASSWORD_FILE").
    const std::string& variable() const noexcept { return variable_; }

  private:
    std::string variable_;
};

/// Looks a variable up; std::nullopt when it is not set.
using Lookup = std::function<std::optional<std::string>(std::string_view)>;

/// Typed access to environment variables, meant to be read once at start-up into const structs.
///
/// An empty value counts as unset (like `${VAR:-default}`), so `FOO=` in a compose file falls back to the default.
/// Every accessor throws ConfigError naming the variable when a value is malformed or out of range.
class Env {
  public:
    /// Reads the real process environment (::getenv).
    static Env process();
    /// A fixed environment, for tests.
    static Env from_map(std::map<std::string, std::string> values);
    /// Any lookup function.
    explicit Env(Lookup lookup);

    /// The raw value; `fallback` when unset, ConfigError when unset and there is no fallback.
    std::string string(std::string_view name, std::optional<std::string> fallback = std::nullopt) const;

    /// A required, non-empty secret from NAME or from the file named by NAME_FILE (one trailing newline stripped).
    /// Setting both is an error, so a stale literal cannot shadow the mounted secret.
    std::string secret(std::string_view name) const;
    /// Like secret(), but std::nullopt when neither NAME nor NAME_FILE is set.
    std::optional<std::string> optional_secret(std::string_view name) const;

    /// A decimal integer in [min, max].
    std::int64_t integer(std::string_view name, std::int64_t fallback, std::int64_t min, std::int64_t max) const;
    /// A finite decimal number in [min, max].
    double number(std::string_view name, double fallback, double min, double max) const;
    /// Exactly "true", "false", "1" or "0".
    bool boolean(std::string_view name, bool fallback) const;
    /// A non-negative whole number with a unit: "250ms", "2s", "1m", "1h".
    std::chrono::milliseconds duration(std::string_view name, std::chrono::milliseconds fallback) const;
    /// A TCP port in 0..65535 (0 asks the OS for an ephemeral port, which tests use).
    std::uint16_t port(std::string_view name, std::uint16_t fallback) const;

  private:
    std::optional<std::string> get(std::string_view name) const;

    Lookup lookup_;
};

/// Parses "250ms" / "2s" / "1m" / "1h"; std::nullopt when malformed. Exposed for tests and other parsers.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

}  // namespace vigie::config
