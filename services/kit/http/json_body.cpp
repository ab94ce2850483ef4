#include "kit/http/json_body.hpp"

#include <algorithm>
#include <boost/beast/http/field.hpp>
#include <cctype>

#include "kit/http/problem.hpp"

namespace vigie::http {

namespace {

[[noreturn]] void bad_request(std::string detail) {
    throw ProblemError(Status::bad_request, std::move(detail));
}

/// Nesting depth of JSON text, ignoring brackets inside strings. Cheap pre-check so that a hostile body never
/// reaches the recursive parts of the JSON library.
int nesting_depth(std::string_view text) {
    int depth = 0;
    int deepest = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (in_string) {
            if (c == '\\') {
                ++i;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            deepest = std::max(deepest, ++depth);
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return deepest;
}

bool is_json_media_type(std::string_view content_type) {
    auto end = content_type.find(';');
    auto media = content_type.substr(0, end);
    while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) {
        media.remove_suffix(1);
    }
    constexpr std::string_view kJson = "application/json";
    if (media.size() != kJson.size()) {
        return false;
    }
    for (std::size_t i = 0; i < media.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(media[i])) != kJson[i]) {
            return false;
        }
    }
    return true;
}

// Appended rather than `"'" + std::string(key) + "'"`: GCC 12 at -O3 (the release preset) reports a false
// -Wrestrict on that expression (GCC bug 105329), which -Werror turns into a failed build.
std::string field_name(std::string_view key) {
    std::string name;
    name.reserve(key.size() + 2);
    name += '\'';
    name += key;
    name += '\'';
    return name;
}

}  // namespace

nlohmann::json parse_json_object_text(std::string_view text, int max_depth) {
    if (nesting_depth(text) > max_depth) {
        bad_request("JSON nesting is deeper than " + std::to_string(max_depth) + " levels");
    }
    nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) {
        bad_request("the body is not valid JSON (or not valid UTF-8)");
    }
    if (!value.is_object()) {
        bad_request("the body must be a JSON object");
    }
    return value;
}

nlohmann::json parse_json_object(const Request& request, int max_depth) {
    auto content_type = request[boost::beast::http::field::content_type];
    if (!is_json_media_type(content_type)) {
        throw ProblemError(Status::unsupported_media_type, "the body must be sent as Content-Type: application/json");
    }
    return parse_json_object_text(request.body(), max_depth);
}

const nlohmann::json* JsonFields::find(std::string_view key, bool required) {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) {
        if (required) {
            bad_request("field " + field_name(key) + " is required");
        }
        if (it != object_.end()) {
            read_.emplace(key);
        }
        return nullptr;
    }
    read_.emplace(key);
    return &*it;
}

std::optional<std::string> JsonFields::optional_string(std::string_view key, std::size_t min_length,
                                                       std::size_t max_length) {
    const auto* value = find(key, false);
    if (value == nullptr) {
        return std::nullopt;
    }
    if (!value->is_string()) {
        bad_request("field " + field_name(key) + " must be a string");
    }
    const auto& text = value->get_ref<const std::string&>();
    auto length = utf8_length(text);
    if (length < min_length || length > max_length) {
        bad_request("field " + field_name(key) + " must be " + std::to_string(min_length) + " to " +
                    std::to_string(max_length) + " characters long");
    }
    if (text.find('\0') != std::string::npos) {
        bad_request("field " + field_name(key) + " must not contain NUL characters");
    }
    return text;
}

std::string JsonFields::string(std::string_view key, std::size_t min_length, std::size_t max_length) {
    find(key, true);
    return *optional_string(key, min_length, max_length);
}

std::int64_t JsonFields::integer(std::string_view key, std::int64_t min, std::int64_t max) {
    const auto* value = find(key, true);
    std::int64_t result = 0;
    if (value->is_number_unsigned()) {
        // Compared as unsigned first: casting 2^64-1 would wrap to -1 and pass a negative range.
        auto u = value->get<std::uint64_t>();
        if (max < 0 || u > static_cast<std::uint64_t>(max)) {
            bad_request("field " + field_name(key) + " must be between " + std::to_string(min) + " and " +
                        std::to_string(max));
        }
        result = static_cast<std::int64_t>(u);
    } else if (value->is_number_integer()) {
        result = value->get<std::int64_t>();
    } else {
        bad_request("field " + field_name(key) + " must be an integer");
    }
    if (result < min || result > max) {
        bad_request("field " + field_name(key) + " must be between " + std::to_string(min) + " and " +
                    std::to_string(max));
    }
    return result;
}

const nlohmann::json& JsonFields::array(std::string_view key, std::size_t min_items, std::size_t max_items) {
    const auto* value = find(key, true);
    if (!value->is_array()) {
        bad_request("field " + field_name(key) + " must be an array");
    }
    if (value->size() < min_items || value->size() > max_items) {
        bad_request("field " + field_name(key) + " must have " + std::to_string(min_items) + " to " +
                    std::to_string(max_items) + " items");
    }
    return *value;
}

void JsonFields::finish() const {
    for (const auto& [key, value] : object_.items()) {
        if (read_.find(key) == read_.end()) {
            bad_request("unknown field " + field_name(key));
        }
    }
}

std::size_t utf8_length(std::string_view text) {
    std::size_t count = 0;
    for (unsigned char c : text) {
        count += (c & 0xC0) != 0x80 ? 1 : 0;
    }
    return count;
}

}  // namespace vigie::http
