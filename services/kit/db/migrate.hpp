#pragma once

#include <filesystem>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace vigie::db {

/// A migration set that cannot be applied: bad file name, duplicate version, an applied file edited since, or a
/// failing statement (the message names the file).
class MigrationError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// One `NNNN_name.sql` file.
struct MigrationFile {
    std::string version;  ///< the digits before the first '_', e.g. "0003"
    std::filesystem::path path;
};

/// The migration files of `dir` sorted by version. Files not ending in .sql are ignored; a .sql file whose name is
/// not `<4+ digits>_<name>.sql`, or two files with the same version, throw MigrationError.
std::vector<MigrationFile> list_migrations(const std::filesystem::path& dir);

/// Applies the pending migrations of `dir` to the database at `conninfo`, synchronously (a start-up step or a
/// Kubernetes Job).
///
/// Holds a session advisory lock keyed on the current schema for the whole run, so concurrent runs serialise.
/// Keeps `schema_migrations(version, applied_at, checksum)`; each pending file runs in its own transaction together
/// with its bookkeeping row, so a failure leaves no half-applied file. Refuses, before applying anything, when an
/// applied file's SHA-256 changed. Running again is a no-op. Files must not contain their own BEGIN/COMMIT.
/// Progress lines go to `log`. Throws MigrationError, or DbError(unavailable) when the database cannot be reached.
void migrate(const std::string& conninfo, const std::filesystem::path& dir, std::ostream& log);

}  // namespace vigie::db
