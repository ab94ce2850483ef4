#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <string>

#include "kit/http/client.hpp"

namespace vigie::order {

/// Asks the user service whether a user exists, on behalf of the caller (their own token is forwarded, so the
/// user service applies its own access rules). Bounded retries on transport errors and 5xx, within the request's
/// deadline; each attempt has its own timeout and span.
class UserDirectory final {
  public:
    enum class Answer { exists, missing, unauthorized, unavailable };

    struct Options {
        std::chrono::milliseconds attempt_timeout{1000};
        int max_attempts = 3;
        std::chrono::milliseconds backoff{50};
    };

    UserDirectory(http::Client& client, Options options) : client_(client), options_(options) {}

    boost::asio::awaitable<Answer> check(const std::string& user_id, std::string_view authorization,
                                         http::Clock::time_point deadline, const trace::SpanContext& parent);

  private:
    http::Client& client_;
    Options options_;
};

}  // namespace vigie::order
