#pragma once

#include <string_view>

namespace vigie::user {

/// A pragmatic e-mail check: one '@', a non-empty local part of at most 64 bytes, a dotted domain of letters,
/// digits and hyphens, no spaces or control characters, 254 bytes at most (RFC 5321 limits).
bool valid_email(std::string_view email);

/// Passwords: 8 to 128 characters (code points); anything else is refused.
inline constexpr std::size_t kMinPasswordLength = 8;
inline constexpr std::size_t kMaxPasswordLength = 128;
inline constexpr std::size_t kMaxNameLength = 100;

}  // namespace vigie::user
