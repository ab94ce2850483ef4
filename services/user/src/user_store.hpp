#pragma once

#include <boost/asio/awaitable.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kit/db/pool.hpp"
#include "kit/trace/trace.hpp"

namespace vigie::user {

struct User {
    std::string id;
    std::string email;
    std::string name;
    std::string role;
    std::string password_hash;
    std::string created_at;  ///< RFC 3339, UTC
    std::string updated_at;
};

/// Changes to apply to a user; absent fields stay as they are.
struct UserPatch {
    std::optional<std::string> email;
    std::optional<std::string> name;
    std::optional<std::string> password_hash;
};

/// The SQL of the user service, one named query per operation (the name is the metric label and span name).
class UserStore final {
  public:
    explicit UserStore(db::Pool& pool) : pool_(pool) {}

    /// Throws db::DbError(constraint_violation) when the e-mail is taken.
    boost::asio::awaitable<User> create(const std::string& email, const std::string& name,
                                        const std::string& password_hash, const std::string& role,
                                        const trace::SpanContext& parent);
    boost::asio::awaitable<std::optional<User>> find_by_id(const std::string& id, const trace::SpanContext& parent);
    boost::asio::awaitable<std::optional<User>> find_by_email(const std::string& email,
                                                              const trace::SpanContext& parent);
    /// Up to `limit` users with ids after `after` (keyset pagination), in id order.
    boost::asio::awaitable<std::vector<User>> list(const std::optional<std::string>& after, std::int64_t limit,
                                                   const trace::SpanContext& parent);
    boost::asio::awaitable<std::optional<User>> update(const std::string& id, const UserPatch& patch,
                                                       const trace::SpanContext& parent);
    boost::asio::awaitable<bool> remove(const std::string& id, const trace::SpanContext& parent);
    /// Creates the admin account, or makes an existing account with that e-mail an admin with that password.
    boost::asio::awaitable<void> upsert_admin(const std::string& email, const std::string& password_hash,
                                              const trace::SpanContext& parent);

  private:
    db::Pool& pool_;
};

}  // namespace vigie::user
