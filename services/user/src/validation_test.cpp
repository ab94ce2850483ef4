#include "validation.hpp"

#include <gtest/gtest.h>

#include <string>

namespace vigie::user {

TEST(ValidEmail, AcceptsOrdinaryAddresses) {
    EXPECT_TRUE(valid_email("ada@example.com"));
    EXPECT_TRUE(valid_email("first.last+tag@sub.example-domain.org"));
    EXPECT_TRUE(valid_email("o'brien@example.ie"));
}

TEST(ValidEmail, RefusesMalformedAddresses) {
    for (const char* email :
         {"", "plain", "@example.com", "ada@", "ada@example", "ada@@example.com", "a b@example.com", "ada@exa mple.com",
          "ada@-example.com", "ada@example-.com", "ada@example..com", ".ada@example.com", "ada.@example.com",
          "a..b@example.com", "ada@example.com.", "ada\n@example.com", "ada@ex_ample.com", "<ada>@example.com"}) {
        EXPECT_FALSE(valid_email(email)) << email;
    }
}

TEST(ValidEmail, EnforcesLengthLimits) {
    EXPECT_FALSE(valid_email(std::string(65, 'a') + "@example.com"));
    EXPECT_TRUE(valid_email(std::string(64, 'a') + "@example.com"));
    EXPECT_FALSE(valid_email("a@" + std::string(250, 'b') + ".com"));
}

}  // namespace vigie::user
