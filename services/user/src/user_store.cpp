#include "user_store.hpp"

namespace vigie::user {

namespace {

// Timestamps are formatted by the database so every service prints them the same way.
constexpr std::string_view kColumns =
    "id::text, email, name, role, password_hash, "
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

User read_user(const db::Result& result, int row) {
    return User{result.get<std::string>(row, 0), result.get<std::string>(row, 1), result.get<std::string>(row, 2),
                result.get<std::string>(row, 3), result.get<std::string>(row, 4), result.get<std::string>(row, 5),
                result.get<std::string>(row, 6)};
}

std::optional<User> first(const db::Result& result) {
    if (result.empty()) {
        return std::nullopt;
    }
    return read_user(result, 0);
}

}  // namespace

boost::asio::awaitable<User> UserStore::create(const std::string& email, const std::string& name,
                                               const std::string& password_hash, const std::string& role,
                                               const trace::SpanContext& parent) {
    static const std::string sql =
        "INSERT INTO users (email, name, password_hash, role) VALUES ($1, $2, $3, $4) "
        "RETURNING " +
        std::string(kColumns);
    std::vector<std::optional<std::string>> params{email, name, password_hash, role};
    auto result = co_await pool_.query("user_insert", sql, std::move(params), &parent);
    co_return read_user(result, 0);
}

boost::asio::awaitable<std::optional<User>> UserStore::find_by_id(const std::string& id,
                                                                  const trace::SpanContext& parent) {
    static const std::string sql = "SELECT " + std::string(kColumns) + " FROM users WHERE id = $1::uuid";
    std::vector<std::optional<std::string>> params{id};
    co_return first(co_await pool_.query("user_by_id", sql, std::move(params), &parent));
}

boost::asio::awaitable<std::optional<User>> UserStore::find_by_email(const std::string& email,
                                                                     const trace::SpanContext& parent) {
    static const std::string sql = "SELECT " + std::string(kColumns) + " FROM users WHERE lower(email) = lower($1)";
    std::vector<std::optional<std::string>> params{email};
    co_return first(co_await pool_.query("user_by_email", sql, std::move(params), &parent));
}

boost::asio::awaitable<std::vector<User>> UserStore::list(const std::optional<std::string>& after, std::int64_t limit,
                                                          const trace::SpanContext& parent) {
    static const std::string sql =
        "SELECT " + std::string(kColumns) + " FROM users WHERE $1::uuid IS NULL OR id > $1::uuid ORDER BY id LIMIT $2";
    std::vector<std::optional<std::string>> params{after, std::to_string(limit)};
    auto result = co_await pool_.query("user_list", sql, std::move(params), &parent);
    std::vector<User> users;
    users.reserve(static_cast<std::size_t>(result.rows()));
    for (int row = 0; row < result.rows(); ++row) {
        users.push_back(read_user(result, row));
    }
    co_return users;
}

boost::asio::awaitable<std::optional<User>> UserStore::update(const std::string& id, const UserPatch& patch,
                                                              const trace::SpanContext& parent) {
    static const std::string sql =
        "UPDATE users SET email = coalesce($2, email), name = coalesce($3, name), "
        "password_hash = coalesce($4, password_hash), updated_at = now() WHERE id = $1::uuid RETURNING " +
        std::string(kColumns);
    std::vector<std::optional<std::string>> params{id, patch.email, patch.name, patch.password_hash};
    co_return first(co_await pool_.query("user_update", sql, std::move(params), &parent));
}

boost::asio::awaitable<bool> UserStore::remove(const std::string& id, const trace::SpanContext& parent) {
    std::vector<std::optional<std::string>> params{id};
    auto result =
        co_await pool_.query("user_delete", "DELETE FROM users WHERE id = $1::uuid", std::move(params), &parent);
    co_return result.affected_rows() > 0;
}

boost::asio::awaitable<void> UserStore::upsert_admin(const std::string& email, const std::string& password_hash,
                                                     const trace::SpanContext& parent) {
    std::vector<std::optional<std::string>> params{email, password_hash};
    co_await pool_.query(
        "user_upsert_admin",
        "INSERT INTO users (email, name, password_hash, role) VALUES ($1, 'Administrator', $2, 'admin') "
        "ON CONFLICT (lower(email)) DO UPDATE SET role = 'admin', "
        "password_hash = EXCLUDED.password_hash, updated_at = now()",
        std::move(params), &parent);
}

}  // namespace vigie::user
