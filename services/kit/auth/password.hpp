#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace vigie::auth {

/// argon2id work factors. Defaults follow the OWASP Password Storage Cheat Sheet (t=2, m=19 MiB, p=1).
struct PasswordCost {
    unsigned long long opslimit = 2;
    std::size_t memlimit = 19 * 1024 * 1024;  ///< bytes
};

/// An encoded argon2id hash ("$argon2id$v=19$m=...,t=...,p=1$salt$hash") with a fresh random salt.
/// Throws std::invalid_argument for a cost below libsodium's minimums, std::runtime_error when out of memory.
std::string hash_password(std::string_view password, const PasswordCost& cost = {});

/// True when `password` matches `hash`; false for a wrong password or a malformed or tampered hash.
bool verify_password(std::string_view hash, std::string_view password);

/// True when `hash` was made with other parameters than `cost` (or is not argon2id): rehash after a good login.
bool password_needs_rehash(std::string_view hash, const PasswordCost& cost = {});

}  // namespace vigie::auth
