#include "kit/auth/password.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace vigie::auth {
namespace {

// The cheapest cost libsodium allows keeps the suite fast; one test covers the real defaults.
constexpr PasswordCost kFast{1, 8 * 1024};

TEST(Password, DefaultCostIsOwaspArgon2id) {
    const std::string hash = hash_password("correct horse battery staple");
    EXPECT_EQ(hash.rfind("$argon2id$v=19$m=19456,t=2,p=1$", 0), 0u) << hash;
    EXPECT_TRUE(verify_password(hash, "correct horse battery staple"));
    EXPECT_FALSE(password_needs_rehash(hash));
}

TEST(Password, RoundTripAndWrongPassword) {
    const std::string hash = hash_password("s3cret!", kFast);
    EXPECT_TRUE(verify_password(hash, "s3cret!"));
    EXPECT_FALSE(verify_password(hash, "s3cret"));
    EXPECT_FALSE(verify_password(hash, "S3cret!"));
    EXPECT_FALSE(verify_password(hash, ""));
}

TEST(Password, SaltsDiffer) {
    EXPECT_NE(hash_password("same", kFast), hash_password("same", kFast));
}

TEST(Password, HandlesBinaryAndEmptyPasswords) {
    const std::string binary("a\0b", 3);
    const std::string hash = hash_password(binary, kFast);
    EXPECT_TRUE(verify_password(hash, binary));
    EXPECT_FALSE(verify_password(hash, "a"));  // the NUL byte is not a terminator
    EXPECT_TRUE(verify_password(hash_password("", kFast), ""));
}

TEST(Password, TamperedOrMalformedHashIsRejected) {
    const std::string hash = hash_password("pw", kFast);
    std::string tampered = hash;
    // Flip a whole-bits character of the digest (the last field) and of the salt.
    char& digest_char = tampered[tampered.size() - 10];
    digest_char = digest_char == 'A' ? 'B' : 'A';
    EXPECT_FALSE(verify_password(tampered, "pw"));
    std::string salt_tampered = hash;
    const auto salt_at = hash.rfind('$', hash.rfind('$') - 1) + 1;
    salt_tampered[salt_at] = salt_tampered[salt_at] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(verify_password(salt_tampered, "pw"));
    EXPECT_FALSE(verify_password(hash.substr(0, hash.size() - 4), "pw"));
    EXPECT_FALSE(verify_password("", "pw"));
    EXPECT_FALSE(verify_password("plaintext", "plaintext"));
    EXPECT_FALSE(verify_password(std::string(500, '$'), "pw"));
    EXPECT_FALSE(verify_password(hash + std::string(1, '\0') + "x", "pw"));
}

TEST(Password, NeedsRehashWhenCostChanges) {
    const std::string hash = hash_password("pw", kFast);
    EXPECT_FALSE(password_needs_rehash(hash, kFast));
    EXPECT_TRUE(password_needs_rehash(hash, PasswordCost{2, 8 * 1024}));
    EXPECT_TRUE(password_needs_rehash("garbage", kFast));
}

TEST(Password, RefusesCostBelowMinimum) {
    EXPECT_THROW(hash_password("pw", PasswordCost{0, 8 * 1024}), std::invalid_argument);
    EXPECT_THROW(hash_password("pw", PasswordCost{1, 1024}), std::invalid_argument);
}

}  // namespace
}  // namespace vigie::auth
