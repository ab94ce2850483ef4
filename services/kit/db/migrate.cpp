#include "kit/db/migrate.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>

#include "kit/db/result.hpp"

namespace vigie::db {
namespace {

// Waiting for another migrator is expected; waiting forever is not.
constexpr const char* kLockTimeout = "SET lock_timeout = '120s'";
constexpr const char* kConnectTimeoutSeconds = "10";

struct ConnDeleter {
    void operator()(PGconn* connection) const { PQfinish(connection); }
};
struct ResultDeleter {
    void operator()(PGresult* result) const { PQclear(result); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnDeleter>;
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

std::string server_error(PGconn* connection, PGresult* result) {
    std::string message = result != nullptr ? PQresultErrorMessage(result) : PQerrorMessage(connection);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
        message.pop_back();
    }
    return message;
}

// Runs `sql` (several statements allowed) with text parameters; throws MigrationError naming `what` on failure.
ResultPtr exec(PGconn* connection, const std::string& sql, const std::string& what,
               const std::vector<std::string>& params = {}) {
    std::vector<const char*> values;
    for (const auto& param : params) {
        values.push_back(param.c_str());
    }
    ResultPtr result(params.empty() ? PQexec(connection, sql.c_str())
                                    : PQexecParams(connection, sql.c_str(), static_cast<int>(values.size()), nullptr,
                                                   values.data(), nullptr, nullptr, 0));
    const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        throw MigrationError(what + ": " + server_error(connection, result.get()));
    }
    return result;
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw MigrationError("cannot read migration " + path.string());
    }
    std::ostringstream content;
    content << in.rdbuf();
    return content.str();
}

// SHA-256 computed by the server (PostgreSQL 11+), so the kit needs no crypto library for it.
std::string checksum(PGconn* connection, const std::string& content, const std::string& name) {
    const char* values[] = {content.data()};
    const int lengths[] = {static_cast<int>(content.size())};
    const int formats[] = {1};  // binary: the file's bytes exactly, whatever they contain
    ResultPtr result(
        PQexecParams(connection, "SELECT encode(sha256($1::bytea), 'hex')", 1, nullptr, values, lengths, formats, 0));
    if (!result || PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
        throw MigrationError("cannot checksum " + name + ": " + server_error(connection, result.get()));
    }
    return PQgetvalue(result.get(), 0, 0);
}

class AdvisoryLock {
  public:
    explicit AdvisoryLock(PGconn* connection) : connection_(connection) {
        exec(connection_, kLockTimeout, "cannot set lock_timeout");
        exec(connection_, "SELECT pg_advisory_lock(hashtextextended('vigie.migrate:' || current_schema(), 0))",
             "cannot take the migration lock");
        exec(connection_, "RESET lock_timeout", "cannot reset lock_timeout");
    }
    ~AdvisoryLock() {
        // Closing the session would release it too; unlocking now frees waiters without waiting for PQfinish.
        if (PQstatus(connection_) == CONNECTION_OK) {
            ResultPtr ignored(PQexec(
                connection_, "SELECT pg_advisory_unlock(hashtextextended('vigie.migrate:' || current_schema(), 0))"));
        }
    }
    AdvisoryLock(const AdvisoryLock&) = delete;
    AdvisoryLock& operator=(const AdvisoryLock&) = delete;

  private:
    PGconn* connection_;
};

bool valid_name(const std::string& stem, std::string& version) {
    const auto underscore = stem.find('_');
    if (underscore == std::string::npos || underscore < 4 || underscore + 1 == stem.size()) {
        return false;
    }
    for (std::size_t i = 0; i < underscore; ++i) {
        if (stem[i] < '0' || stem[i] > '9') {
            return false;
        }
    }
    for (std::size_t i = underscore + 1; i < stem.size(); ++i) {
        const char c = stem[i];
        const bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        if (!ok) {
            return false;
        }
    }
    version = stem.substr(0, underscore);
    return true;
}

}  // namespace

std::vector<MigrationFile> list_migrations(const std::filesystem::path& dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
        throw MigrationError("migration directory " + dir.string() + " does not exist");
    }
    std::vector<MigrationFile> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        if (!entry.is_regular_file() || entry.path().extension() != ".sql") {
            continue;
        }
        std::string version;
        if (!valid_name(entry.path().stem().string(), version)) {
            throw MigrationError("migration file name " + entry.path().filename().string() + " is not NNNN_name.sql");
        }
        files.push_back({version, entry.path()});
    }
    // Numeric order, so 10000 follows 9999 even though the widths differ.
    std::sort(files.begin(), files.end(), [](const MigrationFile& a, const MigrationFile& b) {
        return a.version.size() != b.version.size() ? a.version.size() < b.version.size() : a.version < b.version;
    });
    for (std::size_t i = 1; i < files.size(); ++i) {
        if (files[i].version == files[i - 1].version) {
            throw MigrationError("migrations " + files[i - 1].path.filename().string() + " and " +
                                 files[i].path.filename().string() + " share version " + files[i].version);
        }
    }
    return files;
}

void migrate(const std::string& conninfo, const std::filesystem::path& dir, std::ostream& log) {
    const auto files = list_migrations(dir);

    // connect_timeout comes first so that one given in conninfo (expanded from dbname) overrides it.
    const char* keywords[] = {"connect_timeout", "dbname", nullptr};
    const char* values[] = {kConnectTimeoutSeconds, conninfo.c_str(), nullptr};
    ConnPtr connection(PQconnectdbParams(keywords, values, /*expand_dbname=*/1));
    if (!connection || PQstatus(connection.get()) != CONNECTION_OK) {
        throw DbError(DbError::Kind::unavailable,
                      "migrate: cannot connect to PostgreSQL: " + server_error(connection.get(), nullptr));
    }
    PGconn* conn = connection.get();
    exec(conn, "SET client_min_messages = warning", "cannot configure session");

    AdvisoryLock lock(conn);
    exec(conn,
         "CREATE TABLE IF NOT EXISTS schema_migrations ("
         "version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(), checksum text NOT NULL)",
         "cannot create schema_migrations");

    std::map<std::string, std::string> applied;
    {
        ResultPtr rows = exec(conn, "SELECT version, checksum FROM schema_migrations", "cannot read schema_migrations");
        for (int i = 0; i < PQntuples(rows.get()); ++i) {
            applied.emplace(PQgetvalue(rows.get(), i, 0), PQgetvalue(rows.get(), i, 1));
        }
    }

    // Validate everything before changing anything.
    struct Pending {
        const MigrationFile* file;
        std::string content;
        std::string sum;
    };
    std::vector<Pending> pending;
    for (const auto& file : files) {
        std::string content = read_file(file.path);
        const std::string name = file.path.filename().string();
        std::string sum = checksum(conn, content, name);
        if (auto it = applied.find(file.version); it != applied.end()) {
            if (it->second != sum) {
                throw MigrationError("migration " + name + " was modified after it was applied (checksum " +
                                     it->second + " in schema_migrations, " + sum +
                                     " on disk); add a new migration instead of editing an applied one");
            }
            applied.erase(it);
            continue;
        }
        pending.push_back({&file, std::move(content), std::move(sum)});
    }
    for (const auto& [version, sum] : applied) {
        log << "migrate: warning: version " << version << " is applied but has no file in " << dir.string() << "\n";
    }

    for (const auto& migration : pending) {
        const std::string name = migration.file->path.filename().string();
        log << "migrate: applying " << name << "\n";
        exec(conn, "BEGIN", "cannot begin " + name);
        try {
            exec(conn, migration.content, "migration " + name + " failed");
            exec(conn, "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)", "cannot record " + name,
                 {migration.file->version, migration.sum});
            exec(conn, "COMMIT", "cannot commit " + name);
        } catch (const MigrationError&) {
            ResultPtr ignored(PQexec(conn, "ROLLBACK"));
            throw;
        }
    }
    log << "migrate: " << pending.size() << " applied, " << (files.size() - pending.size()) << " already up to date\n";
}

}  // namespace vigie::db
