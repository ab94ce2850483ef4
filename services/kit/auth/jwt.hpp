#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>

// OpenSSL's key type, kept opaque so users of this header do not pull in OpenSSL.
struct evp_pkey_st;

namespace vigie::auth {

/// The claims Vigie puts in an access token.
struct Claims {
    std::string subject;      ///< "sub": the user id
    std::string role;         ///< "role": e.g. "user" or "admin"
    std::int64_t issued_at;   ///< "iat", Unix seconds
    std::int64_t expires_at;  ///< "exp", Unix seconds
    std::string issuer;       ///< "iss"
};

/// Why a token was refused. Every value maps to a 401 at the edge.
enum class TokenError {
    malformed,        ///< not three base64url JSON segments, bad JSON, or larger than kMaxTokenBytes
    bad_signature,    ///< signature does not verify with the configured public key
    wrong_algorithm,  ///< "alg" is anything but EdDSA (including "none" and HMAC algorithms)
    expired,          ///< now >= exp + kClockSkew
    not_yet_valid,    ///< iat (or nbf) is more than kClockSkew in the future
    missing_claim,    ///< sub, role, iat, exp or iss absent or of the wrong JSON type
    wrong_issuer,     ///< "iss" differs from the expected issuer
};

/// Human text for a problem+json "detail"; never echoes token content.
std::string_view describe(TokenError error);

/// Tolerated difference between the issuer's clock and ours when checking exp, iat and nbf.
inline constexpr std::int64_t kClockSkewSeconds = 30;
/// Tokens longer than this are refused before any decoding: ours are ~300 bytes.
inline constexpr std::size_t kMaxTokenBytes = 4096;

/// A key that could not be loaded; the message says which file and why.
class KeyError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// Issues EdDSA (Ed25519) JWTs. Used by the user service only, which alone holds the private key.
/// Copies share the key; sign() may be called concurrently.
class TokenSigner {
  public:
    /// Loads a PKCS#8 PEM private key (`openssl genpkey -algorithm ed25519`). Throws KeyError.
    static TokenSigner from_pem_file(const std::string& path, std::string issuer, std::chrono::seconds ttl);
    /// Same from PEM text (e.g. a secret read through config::Env::secret). Throws KeyError.
    static TokenSigner from_pem(std::string_view pem, std::string issuer, std::chrono::seconds ttl);

    /// A compact JWS with sub, role, iss, iat = now_unix and exp = now_unix + ttl.
    std::string sign(std::string_view subject, std::string_view role, std::int64_t now_unix) const;
    std::chrono::seconds ttl() const { return ttl_; }
    const std::string& issuer() const { return issuer_; }

  private:
    TokenSigner(std::shared_ptr<evp_pkey_st> key, std::string issuer, std::chrono::seconds ttl);

    std::shared_ptr<evp_pkey_st> key_;
    std::string issuer_;
    std::chrono::seconds ttl_;
};

/// Verifies tokens with the Ed25519 public key only; every service holds one. verify() is thread-safe.
class TokenVerifier {
  public:
    /// Loads a SubjectPublicKeyInfo PEM (`openssl pkey -pubout`). Throws KeyError.
    static TokenVerifier from_pem_file(const std::string& path, std::string expected_issuer);
    /// Same from PEM text. Throws KeyError.
    static TokenVerifier from_pem(std::string_view pem, std::string expected_issuer);

    /// The claims of a valid token, or why it is not valid. Checks size, algorithm (EdDSA only), signature, claim
    /// presence and types, issuer, exp/iat/nbf with kClockSkewSeconds of tolerance.
    std::variant<Claims, TokenError> verify(std::string_view token, std::int64_t now_unix) const;

  private:
    TokenVerifier(std::shared_ptr<evp_pkey_st> key, std::string expected_issuer);

    std::shared_ptr<evp_pkey_st> key_;
    std::string expected_issuer_;
};

/// The token of an "Authorization: Bearer <token>" header (scheme case-insensitive), or nullopt.
std::optional<std::string_view> bearer_token(std::string_view authorization_header);

}  // namespace vigie::auth
