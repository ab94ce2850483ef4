#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "kit/auth/jwt.hpp"
#include "kit/auth/password.hpp"
#include "kit/http/router.hpp"
#include "kit/service/authenticate.hpp"
#include "kit/service/worker_pool.hpp"
#include "user_store.hpp"

namespace vigie::user {

/// The public API of the user service: sign-up, login, and users CRUD (a user reaches only their own record,
/// an admin every record).
class UserApi final {
  public:
    UserApi(UserStore& store, const auth::TokenSigner& signer, service::Authenticator& authenticator,
            service::WorkerPool& workers, auth::PasswordCost cost);

    void add_routes(http::Router& router);

    /// An argon2id hash of `password` with the service's cost, computed on a worker thread.
    boost::asio::awaitable<std::string> hash(std::string password);

    /// Computes the dummy hash on a worker thread ahead of the first login for an unknown e-mail, so that login
    /// costs the same as any other. Spawned at start, beside the admin bootstrap, rather than before it.
    boost::asio::awaitable<bool> prepare_dummy_hash();
    /// A readiness condition: logins are timing-safe only once the dummy hash exists.
    bool dummy_hash_ready() const { return dummy_hash_->ready.load(); }

  private:
    boost::asio::awaitable<http::Response> create(http::RequestContext& context);
    boost::asio::awaitable<http::Response> login(http::RequestContext& context);
    boost::asio::awaitable<http::Response> get(http::RequestContext& context);
    boost::asio::awaitable<http::Response> list(http::RequestContext& context);
    boost::asio::awaitable<http::Response> patch(http::RequestContext& context);
    boost::asio::awaitable<http::Response> remove(http::RequestContext& context);

    /// The id in the path, when the caller may act on it; 404 otherwise (another user's id is not disclosed).
    std::string authorized_target(http::RequestContext& context);
    /// Verifies `password` against `stored_hash`, or against the dummy hash when the account does not exist.
    std::function<bool()> password_check(std::optional<std::string> stored_hash, std::string password);

    UserStore& store_;
    const auth::TokenSigner& signer_;
    service::Authenticator& authenticator_;
    service::WorkerPool& workers_;
    auth::PasswordCost cost_;
    /// Verified against when the e-mail is unknown, so timing does not reveal which accounts exist. Computed once,
    /// on the first worker thread that needs it; shared with the jobs so a job still running at exit stays valid.
    struct DummyHash {
        std::once_flag once;
        std::string value;
        std::atomic<bool> ready{false};
        const std::string& get(const auth::PasswordCost& cost);
    };
    std::shared_ptr<DummyHash> dummy_hash_ = std::make_shared<DummyHash>();
};

}  // namespace vigie::user
