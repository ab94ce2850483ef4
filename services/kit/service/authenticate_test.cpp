#include "kit/service/authenticate.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <chrono>
#include <memory>
#include <string>

#include "kit/http/problem.hpp"

namespace vigie::service {
namespace {

using http::Status;

std::string pem_of(EVP_PKEY* key, bool private_key) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    int ok = private_key ? PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)
                         : PEM_write_bio_PUBKEY(bio.get(), key);
    EXPECT_EQ(ok, 1);
    char* data = nullptr;
    long size = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(size));
}

class AuthenticateTest : public ::testing::Test {
  protected:
    AuthenticateTest() : key_(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"), EVP_PKEY_free) {}

    /// The status of the ProblemError authenticate() throws for this Authorization header (0 if it accepts).
    unsigned refusal(const std::string& authorization, std::int64_t at = now()) {
        http::Request request{http::Verb::get, "/x", 11};
        if (!authorization.empty()) {
            request.set(http::beast_http::field::authorization, authorization);
        }
        http::RequestContext context{request, {}, {}, {}, {}, {}, {}, {}, {}};
        try {
            authenticator_.authenticate(context, at);
        } catch (const http::ProblemError& e) {
            return static_cast<unsigned>(e.status());
        }
        return 0;
    }

    auth::TokenSigner signer(std::string issuer = "vigie") {
        return auth::TokenSigner::from_pem(pem_of(key_.get(), true), std::move(issuer), std::chrono::minutes(5));
    }
    auth::TokenVerifier verifier() { return auth::TokenVerifier::from_pem(pem_of(key_.get(), false), "vigie"); }

    static std::int64_t now() {
        return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    }

    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key_;
    Authenticator authenticator_{verifier(), 4};
};

TEST_F(AuthenticateTest, AcceptsAValidBearerToken) {
    auto token = signer().sign("user-1", "admin", now());
    http::Request request{http::Verb::get, "/x", 11};
    request.set(http::beast_http::field::authorization, "Bearer " + token);
    http::RequestContext context{request, {}, {}, {}, {}, {}, {}, {}, {}};
    auto claims = authenticator_.authenticate(context);
    EXPECT_EQ(claims.subject, "user-1");
    EXPECT_TRUE(is_admin(claims));
    EXPECT_EQ(refusal("bearer " + token), 0U);  // the scheme is case-insensitive
}

TEST_F(AuthenticateTest, RefusesWith401) {
    auto good = signer().sign("user-1", "user", now());
    EXPECT_EQ(refusal(""), 401U);
    EXPECT_EQ(refusal("Basic dXNlcjpwYXNz"), 401U);
    EXPECT_EQ(refusal("Bearer"), 401U);
    EXPECT_EQ(refusal("Bearer not.a.token"), 401U);
    EXPECT_EQ(refusal("Bearer " + signer("someone-else").sign("user-1", "user", now())), 401U);
    EXPECT_EQ(refusal("Bearer " + signer().sign("user-1", "user", now() - 3600)), 401U);  // expired
    auto tampered = good;
    tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
    EXPECT_EQ(refusal("Bearer " + tampered), 401U);
    EXPECT_EQ(refusal("Bearer " + good), 0U);
}

TEST_F(AuthenticateTest, RemembersVerifiedTokensOnly) {
    auto good = signer().sign("user-1", "user", now());
    EXPECT_EQ(refusal("Bearer " + good), 0U);
    EXPECT_EQ(authenticator_.cached(), 1U);
    EXPECT_EQ(refusal("Bearer " + good), 0U);
    EXPECT_EQ(authenticator_.cached(), 1U);  // the same text is one entry
    // A token one byte away from a remembered one is verified in full, refused, and not remembered.
    auto tampered = good;
    tampered[tampered.size() - 3] = tampered[tampered.size() - 3] == 'A' ? 'B' : 'A';
    EXPECT_EQ(refusal("Bearer " + tampered), 401U);
    EXPECT_EQ(refusal("Bearer " + signer("someone-else").sign("user-1", "user", now())), 401U);
    EXPECT_EQ(authenticator_.cached(), 1U);
}

TEST_F(AuthenticateTest, RememberedTokenStillExpires) {
    // 5-minute tokens (signer()): valid now, remembered, then refused once exp + skew has passed.
    auto issued = now();
    auto token = "Bearer " + signer().sign("user-1", "user", issued);
    EXPECT_EQ(refusal(token, issued), 0U);
    EXPECT_EQ(authenticator_.cached(), 1U);
    EXPECT_EQ(refusal(token, issued + 300 + auth::kClockSkewSeconds - 1), 0U);
    EXPECT_EQ(refusal(token, issued + 300 + auth::kClockSkewSeconds), 401U);
}

TEST_F(AuthenticateTest, CacheStaysBounded) {
    // Capacity 4: many distinct valid tokens never grow it past 4, and each is still accepted.
    for (int i = 0; i < 20; ++i) {
        EXPECT_EQ(refusal("Bearer " + signer().sign("user-" + std::to_string(i), "user", now())), 0U);
        EXPECT_LE(authenticator_.cached(), 4U);
    }
}

TEST_F(AuthenticateTest, RoleComesFromTheRememberedClaims) {
    auto admin = "Bearer " + signer().sign("root", "admin", now());
    http::Request request{http::Verb::get, "/x", 11};
    request.set(http::beast_http::field::authorization, admin);
    http::RequestContext context{request, {}, {}, {}, {}, {}, {}, {}, {}};
    EXPECT_TRUE(is_admin(authenticator_.authenticate(context)));
    EXPECT_TRUE(is_admin(authenticator_.authenticate(context)));  // from the cache
    EXPECT_EQ(authenticator_.authenticate(context).subject, "root");
}

TEST_F(AuthenticateTest, RoleUserIsNotAdmin) {
    auth::Claims claims{"u", "user", 0, 0, "vigie"};
    EXPECT_FALSE(is_admin(claims));
    claims.role = "Admin";
    EXPECT_FALSE(is_admin(claims));
}

}  // namespace
}  // namespace vigie::service
