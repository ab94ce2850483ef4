#include "kit/db/result.hpp"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include "kit/db/connection.hpp"
#include "kit/db/testing/pg_fixture.hpp"

namespace vigie::db {
namespace {

TEST(DbErrorClassification, MapsSqlstatesToKinds) {
    using Kind = DbError::Kind;
    EXPECT_EQ(classify_sqlstate("23505"), Kind::constraint_violation);
    EXPECT_EQ(classify_sqlstate("23503"), Kind::constraint_violation);
    EXPECT_EQ(classify_sqlstate("23502"), Kind::constraint_violation);
    EXPECT_EQ(classify_sqlstate("40001"), Kind::serialization);
    EXPECT_EQ(classify_sqlstate("40P01"), Kind::serialization);
    EXPECT_EQ(classify_sqlstate("57014"), Kind::timeout);
    EXPECT_EQ(classify_sqlstate("57P01"), Kind::unavailable);
    EXPECT_EQ(classify_sqlstate("08006"), Kind::unavailable);
    EXPECT_EQ(classify_sqlstate("53300"), Kind::unavailable);
    EXPECT_EQ(classify_sqlstate("42601"), Kind::other);
    EXPECT_EQ(classify_sqlstate(""), Kind::other);
    EXPECT_EQ(to_string(Kind::pool_exhausted), "pool_exhausted");
}

TEST(DbErrorClassification, CarriesSqlstateAndConstraint) {
    const DbError error(DbError::Kind::constraint_violation, "duplicate key", "23505", "users_email_key");
    EXPECT_EQ(error.kind(), DbError::Kind::constraint_violation);
    EXPECT_EQ(error.sqlstate(), "23505");
    EXPECT_EQ(error.constraint(), "users_email_key");
    EXPECT_STREQ(error.what(), "duplicate key");
}

TEST(EmptyResult, HasNoRows) {
    const Result result;
    EXPECT_EQ(result.rows(), 0);
    EXPECT_EQ(result.columns(), 0);
    EXPECT_TRUE(result.empty());
    EXPECT_EQ(result.affected_rows(), 0);
    EXPECT_THROW(result.get<std::string>(0, 0), std::out_of_range);
    EXPECT_THROW(result.column("x"), DbError);
}

TEST(BeginStatement, NamesTheIsolationLevel) {
    EXPECT_EQ(begin_statement(Isolation::serializable), "BEGIN ISOLATION LEVEL SERIALIZABLE");
    EXPECT_EQ(begin_statement(Isolation::read_committed), "BEGIN ISOLATION LEVEL READ COMMITTED");
}

TEST(WithDbname, ReplacesTheDatabaseAndQuotes) {
    EXPECT_EQ(testing::with_dbname("host=/tmp/x port=5 dbname=postgres", "it's"),
              "host='/tmp/x' port='5' dbname='it\\'s'");
    EXPECT_EQ(testing::with_dbname("postgresql://u@h:5433/a", "b"), "user='u' host='h' port='5433' dbname='b'");
    EXPECT_THROW(testing::with_dbname("host='unterminated", "b"), std::invalid_argument);
}

}  // namespace
}  // namespace vigie::db
