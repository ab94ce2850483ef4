#pragma once

#include "kit/auth/jwt.hpp"
#include "kit/http/router.hpp"
#include "kit/service/authenticate.hpp"
#include "order_store.hpp"
#include "user_directory.hpp"

namespace vigie::order {

/// The public API of the order service: create (idempotent), read, list, and status changes that follow the
/// order state machine. A user reaches only their own orders, an admin every order.
class OrderApi final {
  public:
    OrderApi(OrderStore& store, UserDirectory& users, service::Authenticator& authenticator)
        : store_(store), users_(users), authenticator_(authenticator) {}

    void add_routes(http::Router& router);

  private:
    boost::asio::awaitable<http::Response> create(http::RequestContext& context);
    boost::asio::awaitable<http::Response> get(http::RequestContext& context);
    boost::asio::awaitable<http::Response> list(http::RequestContext& context);
    boost::asio::awaitable<http::Response> change_status(http::RequestContext& context);

    OrderStore& store_;
    UserDirectory& users_;
    service::Authenticator& authenticator_;
};

}  // namespace vigie::order
