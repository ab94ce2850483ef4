#include "kit/http/query.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <string>

#include "kit/http/problem.hpp"

namespace vigie::http {

namespace {

[[noreturn]] void bad_query(const std::string& detail) {
    throw ProblemError(Status::bad_request, detail);
}

bool plain_value(std::string_view value) {
    return std::all_of(value.begin(), value.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '~';
    });
}

}  // namespace

QueryParams::QueryParams(std::string_view query, std::initializer_list<std::string_view> allowed) {
    while (!query.empty()) {
        auto amp = query.find('&');
        auto pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        if (pair.empty()) {
            continue;
        }
        auto eq = pair.find('=');
        auto name = pair.substr(0, eq);
        auto value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
        if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
            bad_query("unknown query parameter '" + std::string(name.substr(0, 64)) + "'");
        }
        if (get(name)) {
            bad_query("query parameter '" + std::string(name) + "' is repeated");
        }
        if (!plain_value(value)) {
            bad_query("query parameter '" + std::string(name) + "' has an invalid value");
        }
        items_.emplace_back(name, value);
    }
}

std::optional<std::string_view> QueryParams::get(std::string_view name) const {
    for (const auto& [key, value] : items_) {
        if (key == name) {
            return value;
        }
    }
    return std::nullopt;
}

std::int64_t QueryParams::integer(std::string_view name, std::int64_t fallback, std::int64_t min,
                                  std::int64_t max) const {
    auto text = get(name);
    if (!text) {
        return fallback;
    }
    std::int64_t value = 0;
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc{} || end != text->data() + text->size() || value < min || value > max) {
        bad_query("query parameter '" + std::string(name) + "' must be an integer from " + std::to_string(min) +
                  " to " + std::to_string(max));
    }
    return value;
}

}  // namespace vigie::http
