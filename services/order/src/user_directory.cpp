#include "user_directory.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "kit/log/log.hpp"

namespace vigie::order {

namespace asio = boost::asio;

asio::awaitable<UserDirectory::Answer> UserDirectory::check(const std::string& user_id, std::string_view authorization,
                                                            http::Clock::time_point deadline,
                                                            const trace::SpanContext& parent) {
    auto executor = co_await asio::this_coro::executor;
    for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
        auto attempt_deadline = std::min(deadline, http::Clock::now() + options_.attempt_timeout);
        http::Request request{http::Verb::get, "/api/v1/users/" + user_id, 11};
        request.set(http::beast_http::field::authorization, authorization);
        request.set(http::beast_http::field::accept, "application/json");
        bool retry = false;
        try {
            auto response = co_await client_.send(std::move(request), attempt_deadline, &parent);
            auto status = response.result_int();
            if (status == 200) {
                co_return Answer::exists;
            }
            if (status == 404) {
                co_return Answer::missing;
            }
            if (status == 401 || status == 403) {
                co_return Answer::unauthorized;
            }
            retry = status >= 500;
        } catch (const http::ClientError& e) {
            log::warn("user service call failed",
                      {{"error.message", std::string_view(e.what())}, {"attempt", static_cast<std::int64_t>(attempt)}});
            retry = true;
        }
        if (!retry || attempt == options_.max_attempts || http::Clock::now() + options_.backoff >= deadline) {
            break;
        }
        asio::steady_timer timer(executor, options_.backoff * attempt);
        co_await timer.async_wait(asio::use_awaitable);
    }
    co_return Answer::unavailable;
}

}  // namespace vigie::order
