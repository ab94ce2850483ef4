// libFuzzer target for token verification, in two halves chosen by the first byte:
//  - arbitrary bytes as a token (and as an Authorization header) against a fixed public key: refused, never a crash;
//  - arbitrary bytes as the header and claims of a token correctly signed with that key: the signature holds, so the
//    claim checks run on hostile JSON. Claims that are accepted must satisfy what verify() promises.
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "kit/auth/base64url.hpp"
#include "kit/auth/jwt.hpp"

namespace {

using vigie::auth::Claims;
using vigie::auth::TokenError;

constexpr std::int64_t kNow = 1'800'000'000;
constexpr std::string_view kIssuer = "vigie";

void check(bool condition) {
    if (!condition) {
        std::abort();
    }
}

/// One Ed25519 key for the whole run; made in-process so no private key sits in the repository.
struct Keys {
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"),
                                                            EVP_PKEY_free};
    vigie::auth::TokenVerifier verifier = vigie::auth::TokenVerifier::from_pem(public_pem(), std::string(kIssuer));

    std::string public_pem() const {
        std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
        check(PEM_write_bio_PUBKEY(bio.get(), key.get()) == 1);
        char* data = nullptr;
        long size = BIO_get_mem_data(bio.get(), &data);
        return std::string(data, static_cast<std::size_t>(size));
    }

    std::string sign(std::string_view header, std::string_view payload) const {
        auto input = vigie::auth::base64url_encode(header) + "." + vigie::auth::base64url_encode(payload);
        std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(), EVP_MD_CTX_free);
        unsigned char signature[64];
        std::size_t length = sizeof(signature);
        check(EVP_DigestSignInit(context.get(), nullptr, nullptr, nullptr, key.get()) == 1);
        check(EVP_DigestSign(context.get(), signature, &length, reinterpret_cast<const unsigned char*>(input.data()),
                             input.size()) == 1);
        return input + "." +
               vigie::auth::base64url_encode(std::string_view(reinterpret_cast<const char*>(signature), length));
    }
};

const Keys& keys() {
    static const Keys instance;
    return instance;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    if (data[0] % 2 == 0) {
        (void)keys().verifier.verify(input, kNow);
        if (auto token = vigie::auth::bearer_token(input)) {
            check(token->size() < input.size());
            (void)keys().verifier.verify(*token, kNow);
        }
        return 0;
    }
    // "<header JSON>\n<claims JSON>", signed for real.
    auto newline = input.find('\n');
    std::string_view header = R"({"alg":"EdDSA","typ":"JWT"})";
    std::string_view payload = input;
    if (newline != std::string_view::npos) {
        header = input.substr(0, newline);
        payload = input.substr(newline + 1);
    }
    auto result = keys().verifier.verify(keys().sign(header, payload), kNow);
    if (const auto* claims = std::get_if<Claims>(&result)) {
        check(!claims->subject.empty());
        check(claims->issuer == kIssuer);
        check(kNow - vigie::auth::kClockSkewSeconds < claims->expires_at);
        check(claims->issued_at <= kNow + vigie::auth::kClockSkewSeconds);
    }
    return 0;
}
