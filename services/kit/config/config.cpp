#include "kit/config/config.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <system_error>
#include <utility>

namespace vigie::config {
namespace {

// Secrets are small; refusing big files catches a NAME_FILE pointing at the wrong thing (a log, /dev/zero).
constexpr std::size_t kMaxSecretFileBytes = 64 * 1024;

std::string in_quotes(std::string_view value) {
    std::string out = "\"";
    for (char c : value) {
        // Keep the message on one log line whatever the value holds.
        if (c == '\n') {
            out += "\\n";
        } else if (c == '"') {
            out += "\\\"";
        } else {
            out += c;
        }
    }
    out += '"';
    return out;
}

std::optional<std::int64_t> parse_int(std::string_view text) {
    std::int64_t value = 0;
    const char* first = text.data();
    const char* last = text.data() + text.size();
    // from_chars rejects a leading '+', which people do write; accept it.
    if (first != last && *first == '+') {
        ++first;
    }
    auto [ptr, ec] = std::from_chars(first, last, value);
    if (ec != std::errc{} || ptr != last || first == last) {
        return std::nullopt;
    }
    return value;
}

std::string read_secret_file(const std::string& variable, const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw ConfigError(variable, "cannot open " + in_quotes(path) + ": " + std::strerror(errno));
    }
    std::string content;
    char buffer[4096];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
        content.append(buffer, static_cast<std::size_t>(in.gcount()));
        if (content.size() > kMaxSecretFileBytes) {
            throw ConfigError(variable, in_quotes(path) + " is larger than 64 KiB, not a secret file");
        }
    }
    if (in.bad()) {
        throw ConfigError(variable, "cannot read " + in_quotes(path));
    }
    // Editors and `echo` add one trailing newline; a secret never legitimately ends with one.
    if (!content.empty() && content.back() == '\n') {
        content.pop_back();
        if (!content.empty() && content.back() == '\r') {
            content.pop_back();
        }
    }
    return content;
}

}  // namespace

ConfigError::ConfigError(std::string variable, const std::string& problem)
    : std::runtime_error("configuration error: " + variable + ": " + problem), variable_(std::move(variable)) {}

Env Env::process() {
    return Env([](std::string_view name) -> std::optional<std::string> {
        const std::string key(name);
        if (const char* value = std::getenv(key.c_str())) {
            return std::string(value);
        }
        return std::nullopt;
    });
}

Env Env::from_map(std::map<std::string, std::string> values) {
    return Env([values = std::move(values)](std::string_view name) -> std::optional<std::string> {
        if (auto it = values.find(std::string(name)); it != values.end()) {
            return it->second;
        }
        return std::nullopt;
    });
}

Env::Env(Lookup lookup) : lookup_(std::move(lookup)) {}

std::optional<std::string> Env::get(std::string_view name) const {
    auto value = lookup_(name);
    if (value && value->empty()) {
        return std::nullopt;
    }
    return value;
}

std::string Env::string(std::string_view name, std::optional<std::string> fallback) const {
    if (auto value = get(name)) {
        return *value;
    }
    if (fallback) {
        return *std::move(fallback);
    }
    throw ConfigError(std::string(name), "required but not set");
}

std::optional<std::string> Env::optional_secret(std::string_view name) const {
    const std::string file_variable = std::string(name) + "_FILE";
    auto literal = get(name);
    auto file = get(file_variable);
    if (literal && file) {
        throw ConfigError(std::string(name), "set both " + std::string(name) + " and " + file_variable + "; set one");
    }
    if (literal) {
        return literal;
    }
    if (!file) {
        return std::nullopt;
    }
    std::string content = read_secret_file(file_variable, *file);
    if (content.empty()) {
        throw ConfigError(file_variable, in_quotes(*file) + " is empty");
    }
    return content;
}

std::string Env::secret(std::string_view name) const {
    if (auto value = optional_secret(name)) {
        return *std::move(value);
    }
    throw ConfigError(std::string(name),
                      "required secret: set " + std::string(name) + "_FILE (preferred) or " + std::string(name));
}

std::int64_t Env::integer(std::string_view name, std::int64_t fallback, std::int64_t min, std::int64_t max) const {
    auto text = get(name);
    if (!text) {
        return fallback;
    }
    auto value = parse_int(*text);
    if (!value || *value < min || *value > max) {
        throw ConfigError(std::string(name), "expected an integer in [" + std::to_string(min) + ", " +
                                                 std::to_string(max) + "], got " + in_quotes(*text));
    }
    return *value;
}

double Env::number(std::string_view name, double fallback, double min, double max) const {
    auto text = get(name);
    if (!text) {
        return fallback;
    }
    double value = 0;
    const char* first = text->data();
    const char* last = text->data() + text->size();
    if (first != last && *first == '+') {
        ++first;
    }
    auto [ptr, ec] = std::from_chars(first, last, value);
    // from_chars accepts "inf" and "nan"; neither is a sensible setting and nan slips through range checks.
    if (ec != std::errc{} || ptr != last || first == last || !std::isfinite(value) || value < min || value > max) {
        std::ostringstream range;
        range << "[" << min << ", " << max << "]";
        throw ConfigError(std::string(name), "expected a number in " + range.str() + ", got " + in_quotes(*text));
    }
    return value;
}

bool Env::boolean(std::string_view name, bool fallback) const {
    auto text = get(name);
    if (!text) {
        return fallback;
    }
    if (*text == "true" || *text == "1") {
        return true;
    }
    if (*text == "false" || *text == "0") {
        return false;
    }
    throw ConfigError(std::string(name), "expected true, false, 1 or 0, got " + in_quotes(*text));
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
        ++digits;
    }
    if (digits == 0) {
        return std::nullopt;
    }
    std::int64_t amount = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + digits, amount);
    if (ec != std::errc{} || ptr != text.data() + digits) {
        return std::nullopt;
    }
    const std::string_view unit = text.substr(digits);
    std::int64_t scale = 0;
    if (unit == "ms") {
        scale = 1;
    } else if (unit == "s") {
        scale = 1000;
    } else if (unit == "m") {
        scale = 60 * 1000;
    } else if (unit == "h") {
        scale = 60 * 60 * 1000;
    } else {
        return std::nullopt;
    }
    if (amount > std::numeric_limits<std::int64_t>::max() / scale) {
        return std::nullopt;
    }
    return std::chrono::milliseconds(amount * scale);
}

std::chrono::milliseconds Env::duration(std::string_view name, std::chrono::milliseconds fallback) const {
    auto text = get(name);
    if (!text) {
        return fallback;
    }
    if (auto value = parse_duration(*text)) {
        return *value;
    }
    throw ConfigError(std::string(name),
                      "expected a whole number with a unit (ms, s, m, h) such as 250ms or 2s, got " + in_quotes(*text));
}

std::uint16_t Env::port(std::string_view name, std::uint16_t fallback) const {
    auto text = get(name);
    if (!text) {
        return fallback;
    }
    auto value = parse_int(*text);
    if (!value || *value < 0 || *value > 65535) {
        throw ConfigError(std::string(name), "expected a port in [0, 65535], got " + in_quotes(*text));
    }
    return static_cast<std::uint16_t>(*value);
}

}  // namespace vigie::config
