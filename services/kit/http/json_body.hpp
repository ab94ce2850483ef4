#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "kit/http/types.hpp"

namespace vigie::http {

/// Deepest JSON nesting a request body may have; deeper bodies are refused before parsing.
inline constexpr int kMaxJsonDepth = 16;

/// Parses a request body that must be one JSON object. Throws ProblemError: 415 for a Content-Type other than
/// application/json, 400 for invalid JSON, invalid UTF-8, nesting deeper than `max_depth` or a non-object.
nlohmann::json parse_json_object(const Request& request, int max_depth = kMaxJsonDepth);

/// The same from text, without the Content-Type check (used by the fuzz target and by tests).
nlohmann::json parse_json_object_text(std::string_view text, int max_depth = kMaxJsonDepth);

/// Reads typed fields out of a request object, refusing wrong types, out-of-range values and unknown fields with a
/// 400 ProblemError that names the field. Call finish() once all known fields were read.
class JsonFields {
  public:
    explicit JsonFields(const nlohmann::json& object) : object_(object) {}

    std::string string(std::string_view key, std::size_t min_length, std::size_t max_length);
    std::optional<std::string> optional_string(std::string_view key, std::size_t min_length, std::size_t max_length);
    std::int64_t integer(std::string_view key, std::int64_t min, std::int64_t max);
    const nlohmann::json& array(std::string_view key, std::size_t min_items, std::size_t max_items);

    /// Throws a 400 naming the first field that was not read.
    void finish() const;

  private:
    const nlohmann::json* find(std::string_view key, bool required);
    const nlohmann::json& object_;
    std::set<std::string, std::less<>> read_;
};

/// Counts code points of valid UTF-8 text (JSON strings are already valid UTF-8 once parsed).
std::size_t utf8_length(std::string_view text);

}  // namespace vigie::http
