// libFuzzer target: arbitrary bytes as a JSON request body, read the way handlers read them. A 400 ProblemError is
// the only acceptable failure: any other exception escaping (a nlohmann type_error, say) would be a 500 in a service.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "kit/http/json_body.hpp"
#include "kit/http/problem.hpp"

namespace {

using vigie::http::JsonFields;
using vigie::http::ProblemError;

void check(bool condition) {
    if (!condition) {
        std::abort();
    }
}

/// Runs one typed read; a refusal must be a 400.
template <class Read>
void attempt(Read read) {
    try {
        read();
    } catch (const ProblemError& e) {
        check(e.status() == vigie::http::Status::bad_request);
    }
}

int depth(const nlohmann::json& value) {
    int deepest = 0;
    if (value.is_structured()) {
        for (const auto& child : value) {
            deepest = std::max(deepest, depth(child));
        }
        return deepest + 1;
    }
    return 0;
}

/// Every kind of read, with bounds taken from the input, on the key `key` of `fields`.
void read_all(JsonFields& fields, const std::string& key, std::uint8_t knob) {
    const std::size_t min_length = knob % 4;
    const std::size_t max_length = min_length + knob / 4;
    attempt([&] {
        auto text = fields.string(key, min_length, max_length);
        auto length = vigie::http::utf8_length(text);
        check(length >= min_length && length <= max_length && text.find('\0') == std::string::npos);
    });
    attempt([&] {
        if (auto text = fields.optional_string(key, min_length, max_length)) {
            check(vigie::http::utf8_length(*text) <= max_length);
        }
    });
    const std::int64_t min = knob % 2 == 0 ? -static_cast<std::int64_t>(knob) * 1000 : 1;
    const std::int64_t max = knob % 3 == 0 ? INT64_MAX : static_cast<std::int64_t>(knob) * 1000;
    attempt([&] {
        auto value = fields.integer(key, min, max);
        check(value >= min && value <= max);
    });
    attempt([&] {
        const auto& items = fields.array(key, 0, knob);
        check(items.is_array() && items.size() <= knob);
        // As the order service reads its items: each element with its own JsonFields, whatever its type.
        for (const auto& item : items) {
            JsonFields item_fields(item);
            attempt([&] { (void)item_fields.integer("quantity", 1, 10000); });
            attempt([&] { (void)item_fields.string("sku", 1, 64); });
            attempt([&] { item_fields.finish(); });
        }
    });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    const std::uint8_t knob = data[0];  // read bounds
    std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    nlohmann::json body;
    try {
        body = vigie::http::parse_json_object_text(text);
    } catch (const ProblemError& e) {
        check(e.status() == vigie::http::Status::bad_request);
        return 0;
    }
    check(body.is_object());
    check(depth(body) <= vigie::http::kMaxJsonDepth);
    // Serialising what was accepted must not throw either (responses echo request fields).
    (void)body.dump();

    std::vector<std::string> keys;
    for (const auto& [key, value] : body.items()) {
        keys.push_back(key);
    }
    keys.insert(keys.end(), {"email", "name", "items", "missing"});
    JsonFields fields(body);
    for (const auto& key : keys) {
        read_all(fields, key, knob);
    }
    attempt([&] { fields.finish(); });
    return 0;
}
