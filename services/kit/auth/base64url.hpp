#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace vigie::auth {

/// RFC 4648 §5 base64url without padding, as JWT uses it.
std::string base64url_encode(std::string_view bytes);

/// Strict decoding: rejects padding, characters outside the url-safe alphabet, impossible lengths and non-zero
/// trailing bits, so every byte string has exactly one accepted encoding.
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace vigie::auth
