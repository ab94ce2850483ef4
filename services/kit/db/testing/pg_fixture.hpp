#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace vigie::db::testing {

/// A PostgreSQL server for tests.
///
/// By default starts a private one: initdb + pg_ctl from /usr/lib/postgresql/15/bin (override with
/// VIGIE_PG_BINDIR) in a fresh /tmp directory, listening only on a unix socket in that directory, durability off
/// for speed. The first initdb is kept as /tmp/vigie-pg-template-* and copied by later runs (initdb is the slow
/// part, and ctest starts every test case as its own process). As root it runs the server as the `postgres` user,
/// because PostgreSQL refuses to run as root. When VIGIE_TEST_PG_CONNINFO is set, that already-running server is used
/// instead (CI); it must allow CREATE DATABASE.
class PgServer {
  public:
    PgServer();
    /// Stops and deletes a private server; drops the databases made on an external one.
    ~PgServer();
    PgServer(const PgServer&) = delete;
    PgServer& operator=(const PgServer&) = delete;

    /// One server per test binary, started on first use and stopped at exit.
    static PgServer& shared();

    /// Connection string of the maintenance database ("postgres" on a private server).
    const std::string& conninfo() const { return conninfo_; }
    /// Creates an empty database with a unique name and returns its connection string.
    std::string create_database(std::string_view prefix = "test");

    /// True for a private server: only then can stop() and start() be used.
    bool owned() const { return owned_; }
    /// `pg_ctl stop -m fast`: sessions get FATAL 57P01 and are closed, as in a real shutdown.
    void stop();
    /// Starts the stopped private server again, same socket and port.
    void start();

  private:
    void make_data_directory(const std::filesystem::path& data) const;
    void run_as_server_user(const std::vector<std::string>& argv, const std::string& log_name) const;

    bool owned_ = false;
    std::filesystem::path dir_;
    std::filesystem::path bindir_;
    int port_ = 0;
    std::string conninfo_;
    std::vector<std::string> created_databases_;
    int next_database_ = 0;
};

/// `conninfo` (key/value string or URI) with its dbname replaced.
std::string with_dbname(std::string_view conninfo, std::string_view dbname);

}  // namespace vigie::db::testing
