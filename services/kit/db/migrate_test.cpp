#include "kit/db/migrate.hpp"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "kit/db/result.hpp"
#include "kit/db/testing/pg_fixture.hpp"

namespace vigie::db {
namespace {

namespace fs = std::filesystem;

class MigrationDir {
  public:
    MigrationDir() {
        path_ = fs::temp_directory_path() /
                ("vigie_migrate_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
        fs::create_directories(path_);
    }
    ~MigrationDir() { fs::remove_all(path_); }
    void write(const std::string& name, const std::string& sql) const { std::ofstream(path_ / name) << sql; }
    const fs::path& path() const { return path_; }

  private:
    static inline int counter_ = 0;
    fs::path path_;
};

// One synchronous query returning the first column of the first row ("" when there is no row).
std::string scalar(const std::string& conninfo, const std::string& sql) {
    std::unique_ptr<PGconn, decltype(&PQfinish)> connection(PQconnectdb(conninfo.c_str()), PQfinish);
    std::unique_ptr<PGresult, decltype(&PQclear)> result(PQexec(connection.get(), sql.c_str()), PQclear);
    if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
        throw std::runtime_error(PQresultErrorMessage(result.get()));
    }
    return PQntuples(result.get()) > 0 ? PQgetvalue(result.get(), 0, 0) : "";
}

std::string run_migrate(const std::string& conninfo, const fs::path& dir) {
    std::ostringstream log;
    migrate(conninfo, dir, log);
    return log.str();
}

TEST(ListMigrations, SortsNumericallyAndValidatesNames) {
    MigrationDir dir;
    dir.write("0002_second.sql", "");
    dir.write("0001_first.sql", "");
    dir.write("10000_later.sql", "");
    dir.write("9999_before.sql", "");
    dir.write("README.md", "ignored");
    const auto files = list_migrations(dir.path());
    ASSERT_EQ(files.size(), 4u);
    EXPECT_EQ(files[0].version, "0001");
    EXPECT_EQ(files[1].version, "0002");
    EXPECT_EQ(files[2].version, "9999");
    EXPECT_EQ(files[3].version, "10000");
    EXPECT_EQ(files[0].path.filename(), "0001_first.sql");
}

TEST(ListMigrations, RejectsBadNamesAndDuplicates) {
    for (const char* bad : {"1_short.sql", "0001.sql", "0001_.sql", "abcd_x.sql", "0001_sp ace.sql"}) {
        MigrationDir dir;
        dir.write(bad, "");
        EXPECT_THROW(list_migrations(dir.path()), MigrationError) << bad;
    }
    MigrationDir duplicate;
    duplicate.write("0001_a.sql", "");
    duplicate.write("0001_b.sql", "");
    EXPECT_THROW(list_migrations(duplicate.path()), MigrationError);
    EXPECT_THROW(list_migrations("/nonexistent/vigie/migrations"), MigrationError);
}

TEST(Migrate, AppliesInOrderAndIsIdempotent) {
    const std::string conninfo = testing::PgServer::shared().create_database("migrate");
    MigrationDir dir;
    dir.write("0001_users.sql", "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE);\n");
    dir.write("0002_seed.sql",
              "INSERT INTO users (email) VALUES ('a@example.com');\n"
              "INSERT INTO users (email) VALUES ('b@example.com');\n");
    const std::string first = run_migrate(conninfo, dir.path());
    EXPECT_NE(first.find("applying 0001_users.sql"), std::string::npos) << first;
    EXPECT_NE(first.find("2 applied, 0 already up to date"), std::string::npos) << first;
    EXPECT_EQ(scalar(conninfo, "SELECT count(*) FROM users"), "2");
    EXPECT_EQ(scalar(conninfo, "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations"), "0001,0002");
    EXPECT_EQ(scalar(conninfo, "SELECT length(checksum) FROM schema_migrations LIMIT 1"), "64");

    const std::string second = run_migrate(conninfo, dir.path());
    EXPECT_NE(second.find("0 applied, 2 already up to date"), std::string::npos) << second;
    EXPECT_EQ(scalar(conninfo, "SELECT count(*) FROM users"), "2");  // the seed did not run twice

    dir.write("0003_orders.sql", "CREATE TABLE orders (id bigserial PRIMARY KEY);");
    const std::string third = run_migrate(conninfo, dir.path());
    EXPECT_NE(third.find("1 applied, 2 already up to date"), std::string::npos) << third;
}

TEST(Migrate, RefusesAChangedAppliedFileBeforeApplyingAnything) {
    const std::string conninfo = testing::PgServer::shared().create_database("migrate");
    MigrationDir dir;
    dir.write("0001_users.sql", "CREATE TABLE users (id bigint);");
    run_migrate(conninfo, dir.path());
    dir.write("0001_users.sql", "CREATE TABLE users (id bigint, name text);");
    dir.write("0002_more.sql", "CREATE TABLE more (id bigint);");
    try {
        run_migrate(conninfo, dir.path());
        FAIL() << "a modified migration was accepted";
    } catch (const MigrationError& e) {
        EXPECT_NE(std::string(e.what()).find("0001_users.sql"), std::string::npos) << e.what();
    }
    EXPECT_EQ(scalar(conninfo, "SELECT count(*) FROM schema_migrations"), "1");
    EXPECT_EQ(scalar(conninfo, "SELECT count(*) FROM pg_tables WHERE tablename = 'more'"), "0");
}

TEST(Migrate, FailingFileLeavesNothingBehind) {
    const std::string conninfo = testing::PgServer::shared().create_database("migrate");
    MigrationDir dir;
    dir.write("0001_ok.sql", "CREATE TABLE ok (id int);");
    dir.write("0002_broken.sql", "CREATE TABLE half (id int);\nINSERT INTO missing_table VALUES (1);");
    try {
        run_migrate(conninfo, dir.path());
        FAIL() << "a failing migration was accepted";
    } catch (const MigrationError& e) {
        EXPECT_NE(std::string(e.what()).find("0002_broken.sql"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("missing_table"), std::string::npos) << e.what();
    }
    EXPECT_EQ(scalar(conninfo, "SELECT string_agg(version, ',') FROM schema_migrations"), "0001");
    EXPECT_EQ(scalar(conninfo, "SELECT count(*) FROM pg_tables WHERE tablename = 'half'"), "0");
    // Fixed file: the next run picks up where it stopped.
    dir.write("0002_broken.sql", "CREATE TABLE half (id int);");
    EXPECT_NE(run_migrate(conninfo, dir.path()).find("1 applied, 1 already up to date"), std::string::npos);
}

TEST(Migrate, ConcurrentRunsSerialise) {
    const std::string conninfo = testing::PgServer::shared().create_database("migrate");
    MigrationDir dir;
    // Not idempotent on purpose: two runs applying it at once would collide on CREATE TABLE.
    dir.write("0001_slow.sql", "SELECT pg_sleep(0.2);\nCREATE TABLE once (id int);");
    constexpr int kRuns = 4;
    std::vector<std::string> logs(kRuns);
    std::vector<std::string> errors(kRuns);
    std::vector<std::thread> threads;
    for (int i = 0; i < kRuns; ++i) {
        threads.emplace_back([&, i] {
            try {
                logs[i] = run_migrate(conninfo, dir.path());
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    int applied = 0;
    for (int i = 0; i < kRuns; ++i) {
        EXPECT_EQ(errors[i], "");
        applied += logs[i].find("1 applied") != std::string::npos ? 1 : 0;
    }
    EXPECT_EQ(applied, 1);
    EXPECT_EQ(scalar(conninfo, "SELECT count(*) FROM schema_migrations"), "1");
}

TEST(Migrate, UnreachableDatabaseIsUnavailable) {
    MigrationDir dir;
    dir.write("0001_x.sql", "SELECT 1;");
    try {
        run_migrate(testing::with_dbname(testing::PgServer::shared().conninfo(), "no_such_db"), dir.path());
        FAIL() << "expected DbError";
    } catch (const DbError& e) {
        EXPECT_EQ(e.kind(), DbError::Kind::unavailable);
    }
}

}  // namespace
}  // namespace vigie::db
