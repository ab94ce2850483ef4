#include "kit/auth/jwt.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "kit/auth/base64url.hpp"

namespace vigie::auth {
namespace {

constexpr std::size_t kEd25519SignatureBytes = 64;
// PEM files for Ed25519 keys are ~120 bytes; anything this large is the wrong file.
constexpr std::streamsize kMaxPemBytes = 64 * 1024;

struct BioDeleter {
    void operator()(BIO* bio) const { BIO_free(bio); }
};
struct MdCtxDeleter {
    void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

std::string openssl_error() {
    const unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0) {
        return "unknown OpenSSL error";
    }
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    return buffer;
}

std::string read_pem_file(const std::string& path, std::string_view what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw KeyError("cannot open " + std::string(what) + " file '" + path + "'");
    }
    std::string content(static_cast<std::size_t>(kMaxPemBytes) + 1, '\0');
    in.read(content.data(), kMaxPemBytes + 1);
    if (in.bad()) {
        throw KeyError("cannot read " + std::string(what) + " file '" + path + "'");
    }
    content.resize(static_cast<std::size_t>(in.gcount()));
    if (content.size() > static_cast<std::size_t>(kMaxPemBytes)) {
        throw KeyError(std::string(what) + " file '" + path + "' is too large to be a PEM key");
    }
    return content;
}

std::shared_ptr<evp_pkey_st> load_key(std::string_view pem, bool private_key, std::string_view what) {
    BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (!bio) {
        throw KeyError("cannot load " + std::string(what) + ": " + openssl_error());
    }
    EVP_PKEY* raw = private_key ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)
                                : PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
    if (raw == nullptr) {
        const char* expected = private_key ? "a PEM 'PRIVATE KEY' (openssl genpkey -algorithm ed25519)"
                                           : "a PEM 'PUBLIC KEY' (openssl pkey -pubout)";
        throw KeyError("cannot load " + std::string(what) + ": expected " + expected + ": " + openssl_error());
    }
    std::shared_ptr<evp_pkey_st> key(raw, EVP_PKEY_free);
    if (EVP_PKEY_get_base_id(raw) != EVP_PKEY_ED25519) {
        throw KeyError("cannot load " + std::string(what) + ": key is not Ed25519");
    }
    return key;
}

std::optional<nlohmann::json> parse_object(std::string_view segment) {
    auto bytes = base64url_decode(segment);
    if (!bytes) {
        return std::nullopt;
    }
    auto json = nlohmann::json::parse(*bytes, nullptr, /*allow_exceptions=*/false);
    if (!json.is_object()) {
        return std::nullopt;  // also covers the "discarded" value of a parse error
    }
    return json;
}

const std::string* string_claim(const nlohmann::json& payload, const char* name) {
    auto it = payload.find(name);
    if (it == payload.end() || !it->is_string()) {
        return nullptr;
    }
    return it->get_ptr<const std::string*>();
}

std::optional<std::int64_t> time_claim(const nlohmann::json& payload, const char* name) {
    auto it = payload.find(name);
    if (it == payload.end() || !it->is_number_integer()) {
        return std::nullopt;
    }
    if (it->is_number_unsigned() && it->get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
        return std::nullopt;
    }
    return it->get<std::int64_t>();
}

}  // namespace

std::string_view describe(TokenError error) {
    switch (error) {
        case TokenError::malformed:
            return "the bearer token is malformed";
        case TokenError::bad_signature:
            return "the bearer token signature is invalid";
        case TokenError::wrong_algorithm:
            return "the bearer token is not signed with EdDSA";
        case TokenError::expired:
            return "the bearer token has expired";
        case TokenError::not_yet_valid:
            return "the bearer token is not valid yet";
        case TokenError::missing_claim:
            return "the bearer token lacks a required claim";
        case TokenError::wrong_issuer:
            return "the bearer token was issued by an unexpected issuer";
    }
    return "the bearer token is invalid";
}

TokenSigner::TokenSigner(std::shared_ptr<evp_pkey_st> key, std::string issuer, std::chrono::seconds ttl)
    : key_(std::move(key)), issuer_(std::move(issuer)), ttl_(ttl) {}

TokenSigner TokenSigner::from_pem_file(const std::string& path, std::string issuer, std::chrono::seconds ttl) {
    const std::string pem = read_pem_file(path, "JWT private key");
    try {
        return from_pem(pem, std::move(issuer), ttl);
    } catch (const KeyError& e) {
        throw KeyError(std::string(e.what()) + " (file '" + path + "')");
    }
}

TokenSigner TokenSigner::from_pem(std::string_view pem, std::string issuer, std::chrono::seconds ttl) {
    if (ttl <= std::chrono::seconds::zero()) {
        throw KeyError("JWT ttl must be positive");
    }
    if (issuer.empty()) {
        throw KeyError("JWT issuer must not be empty");
    }
    return TokenSigner(load_key(pem, /*private_key=*/true, "JWT private key"), std::move(issuer), ttl);
}

std::string TokenSigner::sign(std::string_view subject, std::string_view role, std::int64_t now_unix) const {
    // The header never changes; nlohmann would reorder keys anyway, so spell it out.
    static const std::string kHeader = base64url_encode(R"({"alg":"EdDSA","typ":"JWT"})");
    const nlohmann::json payload = {
        {"sub", subject}, {"role", role}, {"iss", issuer_}, {"iat", now_unix}, {"exp", now_unix + ttl_.count()},
    };
    std::string token = kHeader + "." + base64url_encode(payload.dump());

    MdCtxPtr ctx(EVP_MD_CTX_new());
    unsigned char signature[kEd25519SignatureBytes];
    std::size_t signature_size = sizeof signature;
    // Ed25519 hashes internally: the digest argument must be null and only one-shot signing is supported.
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1 ||
        EVP_DigestSign(ctx.get(), signature, &signature_size, reinterpret_cast<const unsigned char*>(token.data()),
                       token.size()) != 1) {
        throw std::runtime_error("JWT signing failed: " + openssl_error());
    }
    token += '.';
    token += base64url_encode(std::string_view(reinterpret_cast<const char*>(signature), signature_size));
    return token;
}

TokenVerifier::TokenVerifier(std::shared_ptr<evp_pkey_st> key, std::string expected_issuer)
    : key_(std::move(key)), expected_issuer_(std::move(expected_issuer)) {}

TokenVerifier TokenVerifier::from_pem_file(const std::string& path, std::string expected_issuer) {
    const std::string pem = read_pem_file(path, "JWT public key");
    try {
        return from_pem(pem, std::move(expected_issuer));
    } catch (const KeyError& e) {
        throw KeyError(std::string(e.what()) + " (file '" + path + "')");
    }
}

TokenVerifier TokenVerifier::from_pem(std::string_view pem, std::string expected_issuer) {
    if (expected_issuer.empty()) {
        throw KeyError("JWT expected issuer must not be empty");
    }
    return TokenVerifier(load_key(pem, /*private_key=*/false, "JWT public key"), std::move(expected_issuer));
}

std::variant<Claims, TokenError> TokenVerifier::verify(std::string_view token, std::int64_t now_unix) const {
    if (token.size() > kMaxTokenBytes) {
        return TokenError::malformed;
    }
    const auto first_dot = token.find('.');
    if (first_dot == std::string_view::npos) {
        return TokenError::malformed;
    }
    const auto second_dot = token.find('.', first_dot + 1);
    if (second_dot == std::string_view::npos || token.find('.', second_dot + 1) != std::string_view::npos) {
        return TokenError::malformed;
    }
    const std::string_view header_segment = token.substr(0, first_dot);
    const std::string_view payload_segment = token.substr(first_dot + 1, second_dot - first_dot - 1);
    const std::string_view signature_segment = token.substr(second_dot + 1);

    // The header decides how to verify, so it is checked before anything else is trusted.
    auto header = parse_object(header_segment);
    if (!header) {
        return TokenError::malformed;
    }
    const std::string* alg = string_claim(*header, "alg");
    if (alg == nullptr) {
        return TokenError::malformed;
    }
    if (*alg != "EdDSA") {
        return TokenError::wrong_algorithm;
    }
    // RFC 7515 §4.1.11: a "crit" header we do not understand must make the token invalid.
    if (header->contains("crit")) {
        return TokenError::malformed;
    }

    auto signature = base64url_decode(signature_segment);
    if (!signature) {
        return TokenError::malformed;
    }
    if (signature->size() != kEd25519SignatureBytes) {
        return TokenError::bad_signature;
    }
    const std::string_view signing_input = token.substr(0, second_dot);
    MdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1) {
        ERR_clear_error();
        return TokenError::bad_signature;
    }
    const int verified =
        EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature->data()), signature->size(),
                         reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size());
    if (verified != 1) {
        // Leave no error on this thread's queue for an unrelated caller to find.
        ERR_clear_error();
        return TokenError::bad_signature;
    }

    auto payload = parse_object(payload_segment);
    if (!payload) {
        return TokenError::malformed;
    }
    const std::string* subject = string_claim(*payload, "sub");
    const std::string* role = string_claim(*payload, "role");
    const std::string* issuer = string_claim(*payload, "iss");
    const auto issued_at = time_claim(*payload, "iat");
    const auto expires_at = time_claim(*payload, "exp");
    if (subject == nullptr || subject->empty() || role == nullptr || issuer == nullptr || !issued_at || !expires_at) {
        return TokenError::missing_claim;
    }
    if (*issuer != expected_issuer_) {
        return TokenError::wrong_issuer;
    }
    // Written as subtractions on now so that extreme claim values cannot overflow.
    if (now_unix - kClockSkewSeconds >= *expires_at) {
        return TokenError::expired;
    }
    if (*issued_at > now_unix + kClockSkewSeconds) {
        return TokenError::not_yet_valid;
    }
    if (payload->contains("nbf")) {
        const auto not_before = time_claim(*payload, "nbf");
        if (!not_before) {
            return TokenError::malformed;
        }
        if (*not_before > now_unix + kClockSkewSeconds) {
            return TokenError::not_yet_valid;
        }
    }
    return Claims{*subject, *role, *issued_at, *expires_at, *issuer};
}

std::optional<std::string_view> bearer_token(std::string_view header) {
    constexpr std::string_view kScheme = "bearer";
    if (header.size() <= kScheme.size()) {
        return std::nullopt;
    }
    for (std::size_t i = 0; i < kScheme.size(); ++i) {
        const char c = header[i];
        const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        if (lower != kScheme[i]) {
            return std::nullopt;
        }
    }
    std::string_view rest = header.substr(kScheme.size());
    if (rest.front() != ' ') {
        return std::nullopt;  // "Bearerx" is another scheme
    }
    while (!rest.empty() && rest.front() == ' ') {
        rest.remove_prefix(1);
    }
    while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t')) {
        rest.remove_suffix(1);
    }
    if (rest.empty() || rest.find_first_of(" \t") != std::string_view::npos) {
        return std::nullopt;
    }
    return rest;
}

}  // namespace vigie::auth
