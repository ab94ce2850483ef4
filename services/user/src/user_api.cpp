#include "user_api.hpp"

#include <nlohmann/json.hpp>

#include "kit/http/json_body.hpp"
#include "kit/http/problem.hpp"
#include "kit/http/query.hpp"
#include "kit/service/authenticate.hpp"
#include "kit/service/database.hpp"
#include "kit/service/ids.hpp"
#include "validation.hpp"

namespace vigie::user {

namespace asio = boost::asio;
using http::ProblemError;
using http::Status;

namespace {

nlohmann::json to_json(const User& user) {
    return {{"id", user.id},     {"email", user.email},           {"name", user.name},
            {"role", user.role}, {"created_at", user.created_at}, {"updated_at", user.updated_at}};
}

std::string checked_email(std::string email) {
    if (!valid_email(email)) {
        throw ProblemError(Status::bad_request, "field 'email' is not a valid e-mail address");
    }
    return email;
}

/// Only the unique e-mail index means "taken": any other violated constraint is a bug to report as one (500), not a
/// misleading 409.
bool is_email_conflict(const db::DbError& e) {
    return e.kind() == db::DbError::Kind::constraint_violation && e.sqlstate() == "23505" &&
           e.constraint() == "users_email_key";
}

/// The hashing pool refuses work with a 503 when it is full; like every 503 of the API, that answer says when to
/// retry (the pool throws from deep inside a handler, where no response headers can be set).
http::Handler with_retry_after(http::Handler handler) {
    return [handler = std::move(handler)](http::RequestContext& context) -> asio::awaitable<http::Response> {
        std::optional<http::Response> refusal;
        try {
            co_return co_await handler(context);
        } catch (const ProblemError& e) {
            if (e.status() != Status::service_unavailable) {
                throw;
            }
            refusal = http::problem(e.status(), e.what());
            refusal->set(http::beast_http::field::retry_after, "1");
        }
        co_return std::move(*refusal);
    };
}

}  // namespace

UserApi::UserApi(UserStore& store, const auth::TokenSigner& signer, service::Authenticator& authenticator,
                 service::WorkerPool& workers, auth::PasswordCost cost)
    : store_(store), signer_(signer), authenticator_(authenticator), workers_(workers), cost_(cost) {}

void UserApi::add_routes(http::Router& router) {
    auto bind = [this](auto member) {
        return with_retry_after(service::with_database_errors(
            [this, member](http::RequestContext& context) { return (this->*member)(context); }));
    };
    router.add(http::Verb::post, "/api/v1/users", bind(&UserApi::create));
    router.add(http::Verb::get, "/api/v1/users", bind(&UserApi::list));
    router.add(http::Verb::get, "/api/v1/users/{id}", bind(&UserApi::get));
    router.add(http::Verb::patch, "/api/v1/users/{id}", bind(&UserApi::patch));
    router.add(http::Verb::delete_, "/api/v1/users/{id}", bind(&UserApi::remove));
    router.add(http::Verb::post, "/api/v1/auth/login", bind(&UserApi::login));
}

// Not coroutines on purpose: GCC 12 lets a lambda inside a coroutine capture the caller's parameter instead of
// the coroutine frame's copy.
asio::awaitable<std::string> UserApi::hash(std::string password) {
    return workers_.run<std::string>(
        [password = std::move(password), cost = cost_] { return auth::hash_password(password, cost); });
}

asio::awaitable<bool> UserApi::prepare_dummy_hash() {
    return workers_.run<bool>([dummy = dummy_hash_, cost = cost_] { return !dummy->get(cost).empty(); });
}

const std::string& UserApi::DummyHash::get(const auth::PasswordCost& cost) {
    std::call_once(once, [this, &cost] {
        value = auth::hash_password("not-a-real-password", cost);
        ready = true;
    });
    return value;
}

std::function<bool()> UserApi::password_check(std::optional<std::string> stored_hash, std::string password) {
    return [dummy = dummy_hash_, cost = cost_, stored_hash = std::move(stored_hash), password = std::move(password)] {
        return auth::verify_password(stored_hash ? *stored_hash : dummy->get(cost), password);
    };
}

asio::awaitable<http::Response> UserApi::create(http::RequestContext& context) {
    auto body = http::parse_json_object(context.request);
    http::JsonFields fields(body);
    auto email = checked_email(fields.string("email", 3, 254));
    auto password = fields.string("password", kMinPasswordLength, kMaxPasswordLength);
    auto name = fields.string("name", 1, kMaxNameLength);
    fields.finish();

    auto password_hash = co_await hash(std::move(password));
    std::optional<User> user;
    try {
        const std::string role = "user";
        user = co_await store_.create(email, name, password_hash, role, context.span);
    } catch (const db::DbError& e) {
        if (!is_email_conflict(e)) {
            throw;
        }
    }
    if (!user) {
        co_return http::problem(Status::conflict, "an account with this e-mail already exists");
    }
    auto response = http::json_response(Status::created, to_json(*user));
    response.set(http::beast_http::field::location, "/api/v1/users/" + user->id);
    co_return response;
}

asio::awaitable<http::Response> UserApi::login(http::RequestContext& context) {
    auto body = http::parse_json_object(context.request);
    http::JsonFields fields(body);
    auto email = fields.string("email", 1, 254);
    auto password = fields.string("password", 1, kMaxPasswordLength);
    fields.finish();

    auto user = co_await store_.find_by_email(email, context.span);
    // Named, not a temporary: GCC 12 mishandles non-trivial temporaries that live across a co_await.
    auto verify = password_check(user ? std::optional(user->password_hash) : std::nullopt, std::move(password));
    bool ok = co_await workers_.run<bool>(std::move(verify));
    if (!user || !ok) {
        co_return http::problem(Status::unauthorized, "invalid e-mail or password");
    }
    auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    co_return http::json_response(Status::ok, {{"access_token", signer_.sign(user->id, user->role, now.count())},
                                               {"token_type", "Bearer"},
                                               {"expires_in", signer_.ttl().count()}});
}

std::string UserApi::authorized_target(http::RequestContext& context) {
    auto claims = authenticator_.authenticate(context);
    auto id = std::string(context.params.get("id"));
    if (!service::is_uuid(id) || (!service::is_admin(claims) && claims.subject != id)) {
        throw ProblemError(Status::not_found, "no such user");
    }
    return id;
}

asio::awaitable<http::Response> UserApi::get(http::RequestContext& context) {
    auto id = authorized_target(context);
    auto user = co_await store_.find_by_id(id, context.span);
    if (!user) {
        co_return http::problem(Status::not_found, "no such user");
    }
    co_return http::json_response(Status::ok, to_json(*user));
}

asio::awaitable<http::Response> UserApi::list(http::RequestContext& context) {
    auto claims = authenticator_.authenticate(context);
    if (!service::is_admin(claims)) {
        co_return http::problem(Status::forbidden, "listing users is reserved to administrators");
    }
    http::QueryParams query(context.query, {"limit", "cursor"});
    auto limit = query.integer("limit", 20, 1, 100);
    std::optional<std::string> after;
    if (auto cursor = query.get("cursor")) {
        if (!service::is_uuid(*cursor)) {
            co_return http::problem(Status::bad_request, "query parameter 'cursor' is not a cursor from this API");
        }
        after = std::string(*cursor);
    }
    // One extra row tells whether another page exists.
    auto users = co_await store_.list(after, limit + 1, context.span);
    nlohmann::json next = nullptr;
    if (static_cast<std::int64_t>(users.size()) > limit) {
        users.pop_back();
        next = users.back().id;
    }
    nlohmann::json items = nlohmann::json::array();
    for (const auto& user : users) {
        items.push_back(to_json(user));
    }
    co_return http::json_response(Status::ok, {{"items", std::move(items)}, {"next_cursor", next}});
}

asio::awaitable<http::Response> UserApi::patch(http::RequestContext& context) {
    auto id = authorized_target(context);
    auto body = http::parse_json_object(context.request);
    http::JsonFields fields(body);
    UserPatch patch;
    if (auto email = fields.optional_string("email", 3, 254)) {
        patch.email = checked_email(std::move(*email));
    }
    patch.name = fields.optional_string("name", 1, kMaxNameLength);
    auto password = fields.optional_string("password", kMinPasswordLength, kMaxPasswordLength);
    fields.finish();
    if (!patch.email && !patch.name && !password) {
        co_return http::problem(Status::bad_request, "nothing to change: send 'email', 'name' or 'password'");
    }
    if (password) {
        patch.password_hash = co_await hash(std::move(*password));
    }
    std::optional<User> user;
    bool conflict = false;
    try {
        user = co_await store_.update(id, patch, context.span);
    } catch (const db::DbError& e) {
        if (!is_email_conflict(e)) {
            throw;
        }
        conflict = true;
    }
    if (conflict) {
        co_return http::problem(Status::conflict, "an account with this e-mail already exists");
    }
    if (!user) {
        co_return http::problem(Status::not_found, "no such user");
    }
    co_return http::json_response(Status::ok, to_json(*user));
}

asio::awaitable<http::Response> UserApi::remove(http::RequestContext& context) {
    auto id = authorized_target(context);
    if (!co_await store_.remove(id, context.span)) {
        co_return http::problem(Status::not_found, "no such user");
    }
    http::Response response{Status::no_content, 11};
    co_return response;
}

}  // namespace vigie::user
