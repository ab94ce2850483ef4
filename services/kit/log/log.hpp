#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

/// JSON-lines logging to stdout with ECS field names (`@timestamp`, `log.level`, `service.name`, `message`).
namespace vigie::log {

enum class Level { debug, info, warn, error };

/// "debug", "info", "warn" or "error" (exact, lowercase); anything else -> nullopt.
std::optional<Level> parse_level(std::string_view text);
std::string_view to_string(Level level);

using Value = std::variant<std::string_view, std::int64_t, double, bool>;

/// One caller field. Dotted ECS keys (`trace.id`) are written flat, as ECS allows. The field only borrows the
/// key and string value: they must outlive the log call (temporaries in the call expression do).
struct Field {
    std::string_view key;
    Value value;

    Field(std::string_view k, std::string_view v) : key(k), value(v) {}
    Field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
    Field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
    Field(std::string_view k, bool v) : key(k), value(v) {}
    Field(std::string_view k, double v) : key(k), value(v) {}
    Field(std::string_view k, float v) : key(k), value(static_cast<double>(v)) {}
    /// Any integer type; unsigned values above INT64_MAX are clamped rather than wrapped.
    template <std::integral T>
    requires(!std::same_as<T, bool>) Field(std::string_view k, T v) : key(k), value(clamp(v)) {}

  private:
    template <std::integral T>
    static std::int64_t clamp(T v) {
        if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(std::int64_t)) {
            if (v > static_cast<T>(std::numeric_limits<std::int64_t>::max())) {
                return std::numeric_limits<std::int64_t>::max();
            }
        }
        return static_cast<std::int64_t>(v);
    }
};

/// Sets the service name and minimum level. Call once at start-up, before other threads log.
/// Defaults: service "vigie", level info.
void init(std::string service_name, Level min_level);
void set_min_level(Level level);
Level min_level();
bool enabled(Level level);

/// Formats one line and writes it with a single write(2) under a mutex, so lines from threads never interleave.
void write(Level level, std::string_view message, std::initializer_list<Field> fields = {});
inline void debug(std::string_view message, std::initializer_list<Field> fields = {}) {
    write(Level::debug, message, fields);
}
inline void info(std::string_view message, std::initializer_list<Field> fields = {}) {
    write(Level::info, message, fields);
}
inline void warn(std::string_view message, std::initializer_list<Field> fields = {}) {
    write(Level::warn, message, fields);
}
inline void error(std::string_view message, std::initializer_list<Field> fields = {}) {
    write(Level::error, message, fields);
}

/// Appends one complete JSON line (with the trailing '\n') to `out`: the pure formatter behind write().
void append_line(std::string& out, std::chrono::system_clock::time_point at, Level level, std::string_view service,
                 std::string_view message, std::span<const Field> fields);
std::string format_line(std::chrono::system_clock::time_point at, Level level, std::string_view service,
                        std::string_view message, std::span<const Field> fields = {});

/// Appends `text` as a quoted JSON string: `"` `\` and control characters escaped, valid UTF-8 passed through,
/// invalid UTF-8 bytes replaced by U+FFFD (a log line must stay parseable whatever a client sent).
void append_json_string(std::string& out, std::string_view text);
/// Appends a JSON number; NaN and infinities (not representable in JSON) become `null`.
void append_json_number(std::string& out, double value);
/// Appends RFC 3339 UTC with milliseconds, e.g. 2024-05-01T12:34:56.789Z.
void append_timestamp(std::string& out, std::chrono::system_clock::time_point at);

/// Test seam: every line goes to `sink` instead of stdout; an empty function restores stdout.
void set_sink_for_test(std::function<void(std::string_view line)> sink);

}  // namespace vigie::log
