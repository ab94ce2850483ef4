#pragma once

#include <cctype>
#include <string_view>

namespace vigie::service {

/// True for the canonical textual UUID form (8-4-4-4-12 hex digits), the only id form our APIs accept.
inline bool is_uuid(std::string_view text) {
    if (text.size() != 36) {
        return false;
    }
    for (std::size_t i = 0; i < text.size(); ++i) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? text[i] != '-' : !std::isxdigit(static_cast<unsigned char>(text[i]))) {
            return false;
        }
    }
    return true;
}

}  // namespace vigie::service
