#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "kit/auth/jwt.hpp"
#include "kit/auth/password.hpp"
#include "kit/http/router.hpp"
#include "kit/service/worker_pool.hpp"
#include "user_store.hpp"

namespace vigie::user {

/// The public API of the user service: sign-up, login, and users CRUD (a user reaches only their own record,
/// an admin every record).
class UserApi final {
  public:
    UserApi(UserStore& store, const auth::TokenSigner& signer, const auth::TokenVerifier& verifier,
            service::WorkerPool& workers, auth::PasswordCost cost);

    void add_routes(http::Router& router);

  private:
    boost::asio::awaitable<http::Response> create(http::RequestContext& context);
    boost::asio::awaitable<http::Response> login(http::RequestContext& context);
    boost::asio::awaitable<http::Response> get(http::RequestContext& context);
    boost::asio::awaitable<http::Response> list(http::RequestContext& context);
    boost::asio::awaitable<http::Response> patch(http::RequestContext& context);
    boost::asio::awaitable<http::Response> remove(http::RequestContext& context);

    /// The id in the path, when the caller may act on it; 404 otherwise (another user's id is not disclosed).
    std::string authorized_target(http::RequestContext& context);
    boost::asio::awaitable<std::string> hash(std::string password);

    UserStore& store_;
    const auth::TokenSigner& signer_;
    const auth::TokenVerifier& verifier_;
    service::WorkerPool& workers_;
    auth::PasswordCost cost_;
    std::string dummy_hash_;  ///< verified against when the e-mail is unknown, so timing does not reveal accounts
};

}  // namespace vigie::user
