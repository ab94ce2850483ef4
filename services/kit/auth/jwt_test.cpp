#include "kit/auth/jwt.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "kit/auth/base64url.hpp"

namespace vigie::auth {
namespace {

constexpr std::int64_t kNow = 1'700'000'000;
constexpr auto kTtl = std::chrono::seconds(900);
constexpr const char* kIssuer = "vigie-user";

using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

KeyPtr generate(const char* type, const char* param = nullptr) {
    EVP_PKEY* key =
        param ? EVP_PKEY_Q_keygen(nullptr, nullptr, type, param) : EVP_PKEY_Q_keygen(nullptr, nullptr, type);
    if (key == nullptr) {
        throw std::runtime_error("key generation failed");
    }
    return KeyPtr(key, EVP_PKEY_free);
}

std::string to_pem(EVP_PKEY* key, bool private_key) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    const int ok = private_key ? PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)
                               : PEM_write_bio_PUBKEY(bio.get(), key);
    if (ok != 1) {
        throw std::runtime_error("PEM encoding failed");
    }
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(size));
}

// Signs arbitrary header/payload JSON with `key`, to craft tokens the TokenSigner would never produce.
std::string sign_raw(EVP_PKEY* key, const std::string& header, const std::string& payload) {
    std::string input = base64url_encode(header) + "." + base64url_encode(payload);
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    unsigned char signature[64];
    std::size_t size = sizeof signature;
    if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key) != 1 ||
        EVP_DigestSign(ctx.get(), signature, &size, reinterpret_cast<const unsigned char*>(input.data()),
                       input.size()) != 1) {
        throw std::runtime_error("signing failed");
    }
    return input + "." + base64url_encode(std::string_view(reinterpret_cast<const char*>(signature), size));
}

class JwtTest : public ::testing::Test {
  protected:
    KeyPtr key_ = generate("ED25519");
    TokenSigner signer_ = TokenSigner::from_pem(to_pem(key_.get(), true), kIssuer, kTtl);
    TokenVerifier verifier_ = TokenVerifier::from_pem(to_pem(key_.get(), false), kIssuer);

    std::string payload(const nlohmann::json& overrides = nlohmann::json::object()) const {
        nlohmann::json claims = {{"sub", "42"}, {"role", "user"}, {"iss", kIssuer}, {"iat", kNow}, {"exp", kNow + 900}};
        for (const auto& [name, value] : overrides.items()) {
            if (value.is_null()) {
                claims.erase(name);
            } else {
                claims[name] = value;
            }
        }
        return claims.dump();
    }

    TokenError error_of(std::string_view token, std::int64_t now = kNow) const {
        auto result = verifier_.verify(token, now);
        if (std::holds_alternative<Claims>(result)) {
            ADD_FAILURE() << "token accepted: " << token;
            return TokenError::malformed;
        }
        return std::get<TokenError>(result);
    }
};

TEST(Base64Url, MatchesRfc4648VectorsWithoutPadding) {
    EXPECT_EQ(base64url_encode(""), "");
    EXPECT_EQ(base64url_encode("f"), "Zg");
    EXPECT_EQ(base64url_encode("fo"), "Zm8");
    EXPECT_EQ(base64url_encode("foo"), "Zm9v");
    EXPECT_EQ(base64url_encode("foobar"), "Zm9vYmFy");
    EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
    EXPECT_EQ(base64url_decode("Zm9vYg"), "foob");
    EXPECT_EQ(base64url_decode("-_8"), "\xfb\xff");
}

TEST(Base64Url, RoundTripsAllByteValues) {
    std::string bytes;
    for (int i = 0; i < 256; ++i) {
        bytes += static_cast<char>(i);
        EXPECT_EQ(base64url_decode(base64url_encode(bytes)), bytes);
    }
}

TEST(Base64Url, RejectsNonCanonicalInput) {
    EXPECT_EQ(base64url_decode("Zg=="), std::nullopt);   // padding
    EXPECT_EQ(base64url_decode("+/8"), std::nullopt);    // standard alphabet
    EXPECT_EQ(base64url_decode("Zm9vY"), std::nullopt);  // impossible length
    EXPECT_EQ(base64url_decode("Zh"), std::nullopt);     // non-zero trailing bits
    EXPECT_EQ(base64url_decode("Zm 9"), std::nullopt);
}

TEST_F(JwtTest, SignedTokenVerifiesWithItsClaims) {
    const std::string token = signer_.sign("42", "admin", kNow);
    auto result = verifier_.verify(token, kNow + 10);
    ASSERT_TRUE(std::holds_alternative<Claims>(result)) << describe(std::get<TokenError>(result));
    const auto& claims = std::get<Claims>(result);
    EXPECT_EQ(claims.subject, "42");
    EXPECT_EQ(claims.role, "admin");
    EXPECT_EQ(claims.issuer, kIssuer);
    EXPECT_EQ(claims.issued_at, kNow);
    EXPECT_EQ(claims.expires_at, kNow + 900);
    EXPECT_EQ(signer_.ttl(), kTtl);
    // The header is exactly what a standard library expects.
    EXPECT_EQ(base64url_decode(token.substr(0, token.find('.'))), R"({"alg":"EdDSA","typ":"JWT"})");
}

TEST_F(JwtTest, ExpiryHonoursClockSkewExactly) {
    const std::string token = signer_.sign("42", "user", kNow);
    const std::int64_t exp = kNow + 900;
    EXPECT_TRUE(std::holds_alternative<Claims>(verifier_.verify(token, exp + kClockSkewSeconds - 1)));
    EXPECT_EQ(error_of(token, exp + kClockSkewSeconds), TokenError::expired);
    EXPECT_EQ(error_of(token, exp + 86400), TokenError::expired);
}

TEST_F(JwtTest, FutureIssuedAtIsNotYetValid) {
    const std::string token = signer_.sign("42", "user", kNow);
    EXPECT_TRUE(std::holds_alternative<Claims>(verifier_.verify(token, kNow - kClockSkewSeconds)));
    EXPECT_EQ(error_of(token, kNow - kClockSkewSeconds - 1), TokenError::not_yet_valid);
    const auto nbf = sign_raw(key_.get(), R"({"alg":"EdDSA"})", payload({{"nbf", kNow + 3600}}));
    EXPECT_EQ(error_of(nbf), TokenError::not_yet_valid);
}

TEST_F(JwtTest, OtherKeyIsBadSignature) {
    auto other = generate("ED25519");
    auto other_signer = TokenSigner::from_pem(to_pem(other.get(), true), kIssuer, kTtl);
    EXPECT_EQ(error_of(other_signer.sign("42", "admin", kNow)), TokenError::bad_signature);
}

TEST_F(JwtTest, TamperedPayloadIsBadSignature) {
    const std::string token = signer_.sign("42", "user", kNow);
    const auto first = token.find('.');
    const auto second = token.find('.', first + 1);
    const std::string forged =
        token.substr(0, first + 1) + base64url_encode(payload({{"role", "admin"}})) + token.substr(second);
    EXPECT_EQ(error_of(forged), TokenError::bad_signature);
}

TEST_F(JwtTest, AlgorithmNoneAndHmacAreRefused) {
    const std::string none =
        base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." + base64url_encode(payload()) + ".";
    EXPECT_EQ(error_of(none), TokenError::wrong_algorithm);
    // Even correctly signed bytes are refused when the header names another algorithm.
    EXPECT_EQ(error_of(sign_raw(key_.get(), R"({"alg":"HS256"})", payload())), TokenError::wrong_algorithm);
    EXPECT_EQ(error_of(sign_raw(key_.get(), R"({"alg":"eddsa"})", payload())), TokenError::wrong_algorithm);
    EXPECT_EQ(error_of(sign_raw(key_.get(), R"({"typ":"JWT"})", payload())), TokenError::malformed);
    EXPECT_EQ(error_of(sign_raw(key_.get(), R"({"alg":"EdDSA","crit":["exp"]})", payload())), TokenError::malformed);
}

TEST_F(JwtTest, TruncatedTokensNeverVerify) {
    const std::string token = signer_.sign("42", "user", kNow);
    for (std::size_t size = 0; size < token.size(); ++size) {
        EXPECT_FALSE(std::holds_alternative<Claims>(verifier_.verify(token.substr(0, size), kNow))) << size;
    }
    EXPECT_EQ(error_of(token.substr(0, token.size() - 1)), TokenError::malformed);  // 85 base64 chars
    EXPECT_EQ(error_of(token.substr(0, token.size() - 2)), TokenError::bad_signature);
    EXPECT_EQ(error_of(token.substr(0, token.rfind('.'))), TokenError::malformed);
}

TEST_F(JwtTest, GarbageIsMalformed) {
    for (std::string_view garbage : {"", ".", "..", "...", "abc", "a.b.c", "a.b.c.d", "Bearer x", "\xff\xfe.\x01.\x02",
                                     "e30.e30.e30", "W10.W10.AAAA"}) {
        EXPECT_EQ(error_of(garbage), TokenError::malformed) << garbage;
    }
    // Valid base64url of something that is not JSON.
    const std::string not_json = base64url_encode("{nope") + "." + base64url_encode(payload()) + ".AAAA";
    EXPECT_EQ(error_of(not_json), TokenError::malformed);
}

TEST_F(JwtTest, HugeTokenIsRefusedEvenIfSigned) {
    const std::string token = signer_.sign(std::string(kMaxTokenBytes, 'x'), "user", kNow);
    ASSERT_GT(token.size(), kMaxTokenBytes);
    EXPECT_EQ(error_of(token), TokenError::malformed);
}

TEST_F(JwtTest, WrongIssuerIsRefused) {
    auto foreign = TokenSigner::from_pem(to_pem(key_.get(), true), "someone-else", kTtl);
    EXPECT_EQ(error_of(foreign.sign("42", "user", kNow)), TokenError::wrong_issuer);
}

TEST_F(JwtTest, MissingOrMistypedClaimsAreRefused) {
    for (const char* name : {"sub", "role", "iss", "iat", "exp"}) {
        EXPECT_EQ(error_of(sign_raw(key_.get(), R"({"alg":"EdDSA"})", payload({{name, nullptr}}))),
                  TokenError::missing_claim)
            << name;
    }
    EXPECT_EQ(error_of(sign_raw(key_.get(), R"({"alg":"EdDSA"})", payload({{"exp", "tomorrow"}}))),
              TokenError::missing_claim);
    EXPECT_EQ(error_of(sign_raw(key_.get(), R"({"alg":"EdDSA"})", payload({{"sub", 42}}))), TokenError::missing_claim);
    EXPECT_EQ(error_of(sign_raw(key_.get(), R"({"alg":"EdDSA"})", payload({{"sub", ""}}))), TokenError::missing_claim);
    EXPECT_EQ(error_of(sign_raw(key_.get(), R"({"alg":"EdDSA"})", "[1,2]")), TokenError::malformed);
}

TEST_F(JwtTest, VerifyIsThreadSafe) {
    const std::string good = signer_.sign("42", "user", kNow);
    auto other = generate("ED25519");
    const std::string bad = TokenSigner::from_pem(to_pem(other.get(), true), kIssuer, kTtl).sign("1", "user", kNow);
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 200; ++i) {
                if (!std::holds_alternative<Claims>(verifier_.verify(good, kNow)) ||
                    std::holds_alternative<Claims>(verifier_.verify(bad, kNow))) {
                    ++wrong;
                }
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    EXPECT_EQ(wrong.load(), 0);
}

TEST_F(JwtTest, DescribeNamesEveryError) {
    for (auto error :
         {TokenError::malformed, TokenError::bad_signature, TokenError::wrong_algorithm, TokenError::expired,
          TokenError::not_yet_valid, TokenError::missing_claim, TokenError::wrong_issuer}) {
        EXPECT_FALSE(describe(error).empty());
    }
    EXPECT_NE(describe(TokenError::expired), describe(TokenError::bad_signature));
}

TEST(JwtKeys, RejectsWrongKeyMaterialWithClearMessages) {
    auto ed = generate("ED25519");
    auto ec = generate("EC", "P-256");
    EXPECT_THROW(TokenSigner::from_pem("not a pem", kIssuer, kTtl), KeyError);
    EXPECT_THROW(TokenSigner::from_pem(to_pem(ed.get(), false), kIssuer, kTtl), KeyError);  // public key
    EXPECT_THROW(TokenSigner::from_pem(to_pem(ec.get(), true), kIssuer, kTtl), KeyError);   // not Ed25519
    EXPECT_THROW(TokenSigner::from_pem(to_pem(ed.get(), true), kIssuer, std::chrono::seconds(0)), KeyError);
    EXPECT_THROW(TokenVerifier::from_pem(to_pem(ec.get(), false), kIssuer), KeyError);
    EXPECT_THROW(TokenVerifier::from_pem(to_pem(ed.get(), false), ""), KeyError);
    try {
        TokenVerifier::from_pem_file("/nonexistent/jwt.pub", kIssuer);
        FAIL() << "expected KeyError";
    } catch (const KeyError& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/jwt.pub"), std::string::npos) << e.what();
    }
}

TEST(JwtKeys, LoadsPemFiles) {
    auto key = generate("ED25519");
    const auto dir = std::filesystem::temp_directory_path() / ("vigie_jwt_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "jwt.key") << to_pem(key.get(), true);
    std::ofstream(dir / "jwt.pub") << to_pem(key.get(), false);
    auto signer = TokenSigner::from_pem_file((dir / "jwt.key").string(), kIssuer, kTtl);
    auto verifier = TokenVerifier::from_pem_file((dir / "jwt.pub").string(), kIssuer);
    EXPECT_TRUE(std::holds_alternative<Claims>(verifier.verify(signer.sign("7", "user", kNow), kNow)));
    // A private key where the public one is expected says which file is wrong.
    try {
        TokenVerifier::from_pem_file((dir / "jwt.key").string(), kIssuer);
        ADD_FAILURE() << "expected KeyError";
    } catch (const KeyError& e) {
        EXPECT_NE(std::string(e.what()).find("jwt.key"), std::string::npos) << e.what();
    }
    std::filesystem::remove_all(dir);
}

TEST(BearerToken, ParsesTheAuthorizationHeader) {
    EXPECT_EQ(bearer_token("Bearer abc.def.ghi"), "abc.def.ghi");
    EXPECT_EQ(bearer_token("bearer abc"), "abc");
    EXPECT_EQ(bearer_token("BEARER  abc "), "abc");
    EXPECT_EQ(bearer_token("Bearer"), std::nullopt);
    EXPECT_EQ(bearer_token("Bearer "), std::nullopt);
    EXPECT_EQ(bearer_token("Bearerabc"), std::nullopt);
    EXPECT_EQ(bearer_token("Basic dXNlcjpwYXNz"), std::nullopt);
    EXPECT_EQ(bearer_token("Bearer a b"), std::nullopt);
    EXPECT_EQ(bearer_token(""), std::nullopt);
}

}  // namespace
}  // namespace vigie::auth
