#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

// libpq's result type, kept opaque so users of this header do not pull in libpq-fe.h.
struct pg_result;

namespace vigie::db {

/// A database failure, classified so callers can map it to an HTTP status without parsing text.
class DbError : public std::runtime_error {
  public:
    enum class Kind {
        unavailable,           ///< cannot connect, connection lost, server shutting down (SQLSTATE 08*, 57P0*, 53300)
        timeout,               ///< acquire or query deadline passed (also SQLSTATE 57014 statement_timeout)
        pool_exhausted,        ///< the pool's wait queue is full (PoolOptions::max_waiters)
        constraint_violation,  ///< SQLSTATE 23* (23505 unique, 23503 foreign key, ...); constraint() names it
        serialization,         ///< SQLSTATE 40001 / 40P01: retry the transaction
        other,                 ///< anything else: a bug or bad SQL
    };

    DbError(Kind kind, const std::string& message, std::string sqlstate = {}, std::string constraint = {});

    Kind kind() const noexcept { return kind_; }
    /// Five-character SQLSTATE from the server, empty when the error did not come from the server.
    const std::string& sqlstate() const noexcept { return sqlstate_; }
    /// Name of the violated constraint (e.g. "users_email_key"), empty if not a constraint violation.
    const std::string& constraint() const noexcept { return constraint_; }

  private:
    Kind kind_;
    std::string sqlstate_;
    std::string constraint_;
};

/// "unavailable", "timeout", ... for logs and metric labels.
std::string_view to_string(DbError::Kind kind);
/// The Kind a server SQLSTATE belongs to.
DbError::Kind classify_sqlstate(std::string_view sqlstate);

/// The rows of one statement, in libpq's text format. Cheap to copy (shared, immutable).
///
/// get<T> supports std::string, std::string_view (valid while a copy of this Result lives), std::int64_t, int,
/// double, bool and std::optional of those (nullopt for NULL). A NULL read as a non-optional type, an unparsable
/// value or an unknown column name throws DbError(other); an out-of-range index throws std::out_of_range.
class Result {
  public:
    Result() = default;
    /// Takes ownership of `result` (may be null: an empty result).
    explicit Result(pg_result* result);

    int rows() const;
    int columns() const;
    bool empty() const { return rows() == 0; }
    std::string_view column_name(int column) const;
    /// Index of a column by name; DbError(other) if there is none.
    int column(std::string_view name) const;
    /// Rows touched by INSERT/UPDATE/DELETE (0 for other statements).
    std::int64_t affected_rows() const;

    bool is_null(int row, int column) const;
    bool is_null(int row, std::string_view column_name) const { return is_null(row, column(column_name)); }

    template <class T>
    T get(int row, int column) const;
    template <class T>
    T get(int row, std::string_view column_name) const {
        return get<T>(row, column(column_name));
    }

  private:
    template <class T>
    struct is_optional : std::false_type {};
    template <class T>
    struct is_optional<std::optional<T>> : std::true_type {};

    void check(int row, int column) const;
    std::string_view text(int row, int column) const;
    std::int64_t parse_integer(int row, int column) const;
    double parse_double(int row, int column) const;
    bool parse_bool(int row, int column) const;
    [[noreturn]] void throw_null(int column) const;

    std::shared_ptr<pg_result> result_;
};

template <class T>
T Result::get(int row, int column) const {
    if constexpr (is_optional<T>::value) {
        if (is_null(row, column)) {
            return std::nullopt;
        }
        return get<typename T::value_type>(row, column);
    } else {
        if (is_null(row, column)) {
            throw_null(column);
        }
        if constexpr (std::is_same_v<T, std::string>) {
            return std::string(text(row, column));
        } else if constexpr (std::is_same_v<T, std::string_view>) {
            return text(row, column);
        } else if constexpr (std::is_same_v<T, bool>) {
            return parse_bool(row, column);
        } else if constexpr (std::is_same_v<T, std::int64_t>) {
            return parse_integer(row, column);
        } else if constexpr (std::is_same_v<T, int>) {
            const std::int64_t value = parse_integer(row, column);
            if (value < INT32_MIN || value > INT32_MAX) {
                throw DbError(DbError::Kind::other, "column '" + std::string(column_name(column)) +
                                                        "' does not fit an int: " + std::to_string(value));
            }
            return static_cast<int>(value);
        } else if constexpr (std::is_same_v<T, double>) {
            return parse_double(row, column);
        } else {
            static_assert(sizeof(T) == 0, "Result::get supports string, string_view, int64_t, int, double, bool");
        }
    }
}

}  // namespace vigie::db
