#include "kit/auth/password.hpp"

#include <sodium.h>

#include <mutex>
#include <stdexcept>

namespace vigie::auth {
namespace {

void ensure_sodium() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (sodium_init() < 0) {
            throw std::runtime_error("libsodium initialisation failed");
        }
    });
}

// libsodium reads encoded hashes as NUL-terminated C strings of bounded size.
bool fits_encoded_hash(std::string_view hash) {
    return !hash.empty() && hash.size() < crypto_pwhash_STRBYTES && hash.find('\0') == std::string_view::npos;
}

}  // namespace

std::string hash_password(std::string_view password, const PasswordCost& cost) {
    ensure_sodium();
    if (cost.opslimit < crypto_pwhash_OPSLIMIT_MIN || cost.opslimit > crypto_pwhash_OPSLIMIT_MAX ||
        cost.memlimit < crypto_pwhash_MEMLIMIT_MIN || cost.memlimit > crypto_pwhash_MEMLIMIT_MAX) {
        throw std::invalid_argument("argon2id cost out of libsodium's range");
    }
    char out[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str_alg(out, password.data(), password.size(), cost.opslimit, cost.memlimit,
                              crypto_pwhash_ALG_ARGON2ID13) != 0) {
        throw std::runtime_error("argon2id hashing failed (out of memory)");
    }
    return std::string(out);
}

bool verify_password(std::string_view hash, std::string_view password) {
    ensure_sodium();
    if (!fits_encoded_hash(hash)) {
        return false;
    }
    const std::string terminated(hash);
    return crypto_pwhash_str_verify(terminated.c_str(), password.data(), password.size()) == 0;
}

bool password_needs_rehash(std::string_view hash, const PasswordCost& cost) {
    ensure_sodium();
    if (!fits_encoded_hash(hash)) {
        return true;
    }
    // libsodium would accept argon2i hashes with matching parameters; we want them upgraded to argon2id.
    if (hash.rfind(crypto_pwhash_argon2id_STRPREFIX, 0) != 0) {
        return true;
    }
    const std::string terminated(hash);
    // Returns 1 for other parameters, -1 for a malformed string: both mean rehash.
    return crypto_pwhash_str_needs_rehash(terminated.c_str(), cost.opslimit, cost.memlimit) != 0;
}

}  // namespace vigie::auth
