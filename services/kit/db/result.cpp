#include "kit/db/result.hpp"

#include <libpq-fe.h>

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace vigie::db {

DbError::DbError(Kind kind, const std::string& message, std::string sqlstate, std::string constraint)
    : std::runtime_error(message), kind_(kind), sqlstate_(std::move(sqlstate)), constraint_(std::move(constraint)) {}

std::string_view to_string(DbError::Kind kind) {
    switch (kind) {
        case DbError::Kind::unavailable:
            return "unavailable";
        case DbError::Kind::timeout:
            return "timeout";
        case DbError::Kind::pool_exhausted:
            return "pool_exhausted";
        case DbError::Kind::constraint_violation:
            return "constraint_violation";
        case DbError::Kind::serialization:
            return "serialization";
        case DbError::Kind::other:
            return "other";
    }
    return "other";
}

DbError::Kind classify_sqlstate(std::string_view sqlstate) {
    using Kind = DbError::Kind;
    if (sqlstate.size() != 5) {
        return Kind::other;
    }
    const std::string_view error_class = sqlstate.substr(0, 2);
    if (error_class == "23") {
        return Kind::constraint_violation;
    }
    if (sqlstate == "40001" || sqlstate == "40P01") {
        return Kind::serialization;
    }
    if (sqlstate == "57014") {
        return Kind::timeout;  // statement_timeout fired on the server
    }
    // 08: connection exception; 57P01-57P03: admin/crash shutdown, cannot connect now; 53300: too many connections.
    if (error_class == "08" || sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03" ||
        sqlstate == "53300") {
        return Kind::unavailable;
    }
    return Kind::other;
}

Result::Result(pg_result* result) : result_(result, PQclear) {}

int Result::rows() const {
    return result_ ? PQntuples(result_.get()) : 0;
}

int Result::columns() const {
    return result_ ? PQnfields(result_.get()) : 0;
}

std::string_view Result::column_name(int column) const {
    if (column < 0 || column >= columns()) {
        throw std::out_of_range("column index " + std::to_string(column) + " out of range");
    }
    return PQfname(result_.get(), column);
}

int Result::column(std::string_view name) const {
    for (int i = 0; i < columns(); ++i) {
        // PQfnumber would case-fold and parse quotes; an exact match is what callers mean.
        if (name == PQfname(result_.get(), i)) {
            return i;
        }
    }
    throw DbError(DbError::Kind::other, "result has no column '" + std::string(name) + "'");
}

std::int64_t Result::affected_rows() const {
    if (!result_) {
        return 0;
    }
    const char* text = PQcmdTuples(result_.get());
    if (text == nullptr || *text == '\0') {
        return 0;
    }
    return std::strtoll(text, nullptr, 10);
}

void Result::check(int row, int column) const {
    if (row < 0 || row >= rows()) {
        throw std::out_of_range("row index " + std::to_string(row) + " out of range (" + std::to_string(rows()) +
                                " rows)");
    }
    if (column < 0 || column >= columns()) {
        throw std::out_of_range("column index " + std::to_string(column) + " out of range");
    }
}

bool Result::is_null(int row, int column) const {
    check(row, column);
    return PQgetisnull(result_.get(), row, column) == 1;
}

std::string_view Result::text(int row, int column) const {
    check(row, column);
    return std::string_view(PQgetvalue(result_.get(), row, column),
                            static_cast<std::size_t>(PQgetlength(result_.get(), row, column)));
}

void Result::throw_null(int column) const {
    throw DbError(DbError::Kind::other, "column '" + std::string(column_name(column)) + "' is NULL");
}

std::int64_t Result::parse_integer(int row, int column) const {
    const std::string_view value = text(row, column);
    std::int64_t out = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
    if (ec != std::errc{} || ptr != value.data() + value.size() || value.empty()) {
        throw DbError(DbError::Kind::other,
                      "column '" + std::string(column_name(column)) + "' is not an integer: " + std::string(value));
    }
    return out;
}

double Result::parse_double(int row, int column) const {
    const std::string_view value = text(row, column);
    double out = 0;
    // PostgreSQL spells infinities "Infinity"; from_chars only knows "inf".
    if (value == "Infinity") {
        return HUGE_VAL;
    }
    if (value == "-Infinity") {
        return -HUGE_VAL;
    }
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
    if (ec != std::errc{} || ptr != value.data() + value.size() || value.empty()) {
        throw DbError(DbError::Kind::other,
                      "column '" + std::string(column_name(column)) + "' is not a number: " + std::string(value));
    }
    return out;
}

bool Result::parse_bool(int row, int column) const {
    const std::string_view value = text(row, column);
    if (value == "t") {
        return true;
    }
    if (value == "f") {
        return false;
    }
    throw DbError(DbError::Kind::other,
                  "column '" + std::string(column_name(column)) + "' is not a boolean: " + std::string(value));
}

}  // namespace vigie::db
