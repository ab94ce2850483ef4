#include "gateway.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "admission.hpp"
#include "kit/http/client.hpp"
#include "kit/http/problem.hpp"
#include "kit/http/server.hpp"

namespace vigie::gateway {
namespace {

namespace asio = boost::asio;
using http::beast_http::field;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::int64_t kNow = 1'700'000'000;
constexpr const char* kUserId = "6f1c2a4e-2b7d-4c1e-9a55-0a1b2c3d4e5f";

/// An Ed25519 key pair as PEM, like the user service's.
struct Keys {
    Keys() {
        std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"),
                                                                EVP_PKEY_free);
        private_pem = pem(key.get(), true);
        public_pem = pem(key.get(), false);
    }
    static std::string pem(EVP_PKEY* key, bool private_key) {
        std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
        if (private_key) {
            PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
        } else {
            PEM_write_bio_PUBKEY(bio.get(), key);
        }
        char* data = nullptr;
        auto size = BIO_get_mem_data(bio.get(), &data);
        return std::string(data, static_cast<std::size_t>(size));
    }
    std::string private_pem;
    std::string public_pem;
};

const Keys& keys() {
    static const Keys instance;
    return instance;
}

auth::TokenSigner signer() {
    return auth::TokenSigner::from_pem(keys().private_pem, "vigie", seconds(900));
}
auth::TokenVerifier verifier() {
    return auth::TokenVerifier::from_pem(keys().public_pem, "vigie");
}

std::int64_t unix_now() {
    return std::chrono::duration_cast<seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// ----------------------------------------------------------------------------------------------------------------
// Admission

struct Call {
    explicit Call(std::string client, std::string authorization = "") : client(std::move(client)) {
        if (!authorization.empty()) {
            request.set(field::authorization, authorization);
        }
    }
    http::Request request{http::Verb::get, "/api/v1/users", 11};
    std::string client;
    http::RequestContext context() { return {request, {}, {}, {}, {}, "id", {}, {}, client}; }
};

TEST(Admission, RequiresAValidBearerToken) {
    Admission admission(verifier(), {.rate = 0}, 100);
    auto now = http::Clock::now();
    auto token = signer().sign("alice", "user", kNow);

    Call valid("10.0.0.1", "Bearer " + token);
    EXPECT_FALSE(admission.admit(valid.context(), true, now, kNow));
    EXPECT_FALSE(admission.admit(valid.context(), true, now, kNow));  // served from the cache

    Call missing("10.0.0.1");
    auto refusal = admission.admit(missing.context(), true, now, kNow);
    ASSERT_TRUE(refusal);
    EXPECT_EQ(refusal->result(), http::Status::unauthorized);
    EXPECT_EQ((*refusal)[field::content_type], "application/problem+json");
    EXPECT_FALSE(admission.admit(missing.context(), false, now, kNow));  // public route

    Call basic("10.0.0.1", "Basic YTpi");
    EXPECT_EQ(admission.admit(basic.context(), true, now, kNow)->result(), http::Status::unauthorized);

    auto tampered = token;
    tampered[tampered.size() - 2] = tampered[tampered.size() - 2] == 'A' ? 'B' : 'A';
    Call forged("10.0.0.1", "Bearer " + tampered);
    EXPECT_EQ(admission.admit(forged.context(), true, now, kNow)->result(), http::Status::unauthorized);

    auto foreign = auth::TokenSigner::from_pem(Keys().private_pem, "vigie", seconds(900)).sign("alice", "user", kNow);
    Call stranger("10.0.0.1", "Bearer " + foreign);
    EXPECT_EQ(admission.admit(stranger.context(), true, now, kNow)->result(), http::Status::unauthorized);
}

TEST(Admission, CachedTokenStillExpires) {
    Admission admission(verifier(), {.rate = 0}, 100);
    auto now = http::Clock::now();
    Call call("10.0.0.1", "Bearer " + signer().sign("alice", "user", kNow));
    EXPECT_FALSE(admission.admit(call.context(), true, now, kNow));
    auto later = kNow + 900 + auth::kClockSkewSeconds;
    auto refusal = admission.admit(call.context(), true, now, later);
    ASSERT_TRUE(refusal);
    EXPECT_EQ(refusal->result(), http::Status::unauthorized);
    EXPECT_NE(refusal->body().find("expired"), std::string::npos) << refusal->body();
}

TEST(Admission, LimitsByTokenSubjectElseByAddress) {
    Admission admission(verifier(), {.rate = 1, .burst = 2, .max_clients = 100}, 100);
    auto now = http::Clock::now();
    auto alice = "Bearer " + signer().sign("alice", "user", kNow);
    auto bob = "Bearer " + signer().sign("bob", "user", kNow);
    // Alice from two addresses shares one bucket.
    Call alice_home("10.0.0.1", alice);
    Call alice_work("10.0.0.2", alice);
    EXPECT_FALSE(admission.admit(alice_home.context(), true, now, kNow));
    EXPECT_FALSE(admission.admit(alice_work.context(), true, now, kNow));
    auto limited = admission.admit(alice_home.context(), true, now, kNow);
    ASSERT_TRUE(limited);
    EXPECT_EQ(limited->result(), http::Status::too_many_requests);
    EXPECT_EQ((*limited)[field::retry_after], "1");
    EXPECT_EQ((*limited)[field::content_type], "application/problem+json");
    // Bob, from Alice's address, has his own.
    Call bob_home("10.0.0.1", bob);
    EXPECT_FALSE(admission.admit(bob_home.context(), true, now, kNow));
    // Anonymous callers (login) are limited by address, including when they send bad tokens.
    Call anonymous("10.0.0.9");
    EXPECT_FALSE(admission.admit(anonymous.context(), false, now, kNow));
    Call guesser("10.0.0.9", "Bearer not-a-token");
    EXPECT_EQ(admission.admit(guesser.context(), true, now, kNow)->result(), http::Status::unauthorized);
    EXPECT_EQ(admission.admit(anonymous.context(), false, now, kNow)->result(), http::Status::too_many_requests);
    // Tokens come back with time.
    EXPECT_FALSE(admission.admit(alice_home.context(), true, now + seconds(1), kNow));
}

// ----------------------------------------------------------------------------------------------------------------
// The gateway end to end, against fake user and order services on ephemeral ports

template <class T>
T run(asio::io_context& io, asio::awaitable<T> task) {
    std::optional<T> result;
    std::exception_ptr error;
    bool done = false;
    asio::co_spawn(io, std::move(task), [&](const std::exception_ptr& e, T value) {
        error = e;
        if (!e) {
            result.emplace(std::move(value));
        }
        done = true;
    });
    while (!done) {
        io.run_one();
    }
    if (error) {
        std::rethrow_exception(error);
    }
    return std::move(*result);
}

/// A stand-in for the user or order service: records what reached it and answers after an optional delay.
struct FakeService {
    FakeService(asio::io_context& io, std::vector<std::pair<http::Verb, std::string>> routes) {
        for (auto& [verb, pattern] : routes) {
            router.add(verb, pattern, [this, &io](http::RequestContext& context) -> asio::awaitable<http::Response> {
                ++hits;
                last = context.request;
                if (delay.count() > 0) {
                    asio::steady_timer timer(io, delay);
                    co_await timer.async_wait(asio::use_awaitable);
                }
                if (status != 200) {
                    co_return http::problem(static_cast<http::Status>(status), "fake failure");
                }
                auto response = http::json_response(http::Status::ok, body);
                response.set(field::connection, "keep-alive, X-Upstream-Hop");
                response.set("X-Upstream-Hop", "secret");
                co_return response;
            });
        }
        server = std::make_unique<http::Server>(io, http::ServerOptions{}, router,
                                                http::ServerObservability{"fake", nullptr, false, false});
        server->start();
    }
    http::Router router;
    std::unique_ptr<http::Server> server;
    int hits = 0;
    http::Request last;
    unsigned status = 200;
    milliseconds delay{0};
    nlohmann::json body = nlohmann::json::object();
};

class GatewayTest : public ::testing::Test {
  protected:
    GatewayTest() {
        user_.body = {{"id", kUserId}, {"name", "Alice"}};
        order_.body = {{"items", nlohmann::json::array({{{"id", "o-1"}}, {{"id", "o-2"}}})}, {"next_cursor", nullptr}};
        token_ = signer().sign(kUserId, "user", unix_now());
    }

    void start(GatewayConfig config) {
        gateway_ = std::make_unique<Gateway>(io_.get_executor(), std::move(config), verifier(), nullptr);
        gateway_->add_routes(router_);
        gateway_->start();
        server_ = std::make_unique<http::Server>(io_, http::ServerOptions{}, router_,
                                                 http::ServerObservability{"gateway", nullptr, false, false});
        server_->start();
        http::ClientOptions options;
        options.upstream = "gateway";
        options.port = server_->port();
        client_ = std::make_unique<http::Client>(io_.get_executor(), options);
    }

    GatewayConfig config(std::uint16_t user_port, std::uint16_t order_port) {
        GatewayConfig config;
        config.users.name = "user";
        config.users.service = "gateway";
        config.users.instances = {{{"127.0.0.1", user_port}, std::nullopt}};
        config.orders = config.users;
        config.orders.name = "order";
        config.orders.instances = {{{"127.0.0.1", order_port}, std::nullopt}};
        config.rate_limit.rate = 0;
        return config;
    }

    void start() { start(config(user_.server->port(), order_.server->port())); }

    http::Response send(http::Verb verb, std::string target, bool with_token = true, std::string body = "") {
        http::Request request{verb, target, 11};
        if (with_token) {
            request.set(field::authorization, "Bearer " + token_);
        }
        if (!body.empty()) {
            request.set(field::content_type, "application/json");
            request.body() = std::move(body);
        }
        return send(std::move(request));
    }

    http::Response send(http::Request request) {
        return run(io_, client_->send(std::move(request), http::Clock::now() + seconds(5)));
    }

    asio::io_context io_;
    FakeService user_{io_, {{http::Verb::get, "/api/v1/users/{id}"}, {http::Verb::post, "/api/v1/users"}}};
    FakeService order_{io_, {{http::Verb::get, "/api/v1/orders"}, {http::Verb::post, "/api/v1/orders"}}};
    std::string token_;
    http::Router router_;
    std::unique_ptr<Gateway> gateway_;
    std::unique_ptr<http::Server> server_;
    std::unique_ptr<http::Client> client_;
};

TEST_F(GatewayTest, ForwardsUnchangedWithTheGatewaysHeaders) {
    start();
    http::Request request{http::Verb::get, "/api/v1/orders?user_id=" + std::string(kUserId) + "&limit=2", 11};
    request.set(field::authorization, "Bearer " + token_);
    request.set("X-Request-Id", "client-chosen-id");
    request.set("X-Forwarded-For", "10.9.9.9");
    auto response = send(std::move(request));
    ASSERT_EQ(response.result_int(), 200) << response.body();
    ASSERT_EQ(order_.hits, 1);
    EXPECT_EQ(user_.hits, 0);
    EXPECT_EQ(order_.last.target(), "/api/v1/orders?user_id=" + std::string(kUserId) + "&limit=2");
    EXPECT_EQ(order_.last[field::authorization], "Bearer " + token_);
    EXPECT_EQ(order_.last["X-Request-Id"], "client-chosen-id");
    EXPECT_EQ(response["X-Request-Id"], "client-chosen-id");
    EXPECT_EQ(order_.last["X-Forwarded-For"], "127.0.0.1");
    EXPECT_FALSE(order_.last["X-Request-Timeout-Ms"].empty());  // the remaining deadline goes downstream
    EXPECT_EQ(response.count("X-Upstream-Hop"), 0u);            // named by the upstream's Connection header
    EXPECT_EQ(nlohmann::json::parse(response.body())["items"].size(), 2u);
}

TEST_F(GatewayTest, RefusesMissingTokensExceptForSignUpAndLogin) {
    start();
    auto refused = send(http::Verb::get, "/api/v1/users/" + std::string(kUserId), false);
    EXPECT_EQ(refused.result_int(), 401);
    EXPECT_EQ(refused[field::content_type], "application/problem+json");
    EXPECT_EQ(refused[field::www_authenticate], "Bearer");
    EXPECT_EQ(user_.hits, 0);
    auto signup = send(http::Verb::post, "/api/v1/users", false, R"({"email":"a@b.c"})");
    EXPECT_EQ(signup.result_int(), 200);
    EXPECT_EQ(user_.hits, 1);
    EXPECT_EQ(user_.last.body(), R"({"email":"a@b.c"})");
}

TEST_F(GatewayTest, AnswersUnknownRoutesWithoutForwarding) {
    start();
    EXPECT_EQ(send(http::Verb::get, "/api/v1/users/" + std::string(kUserId) + "/secrets").result_int(), 404);
    EXPECT_EQ(send(http::Verb::get, "/api/v1/users/../orders").result_int(), 400);  // path traversal
    EXPECT_EQ(send(http::Verb::get, "/api/v1/users/%2e%2e/orders").result_int(), 400);
    auto wrong_method = send(http::Verb::put, "/api/v1/orders");
    EXPECT_EQ(wrong_method.result_int(), 405);
    EXPECT_EQ(wrong_method[field::allow], "POST, GET");
    EXPECT_EQ(user_.hits + order_.hits, 0);
}

TEST_F(GatewayTest, RateLimitAnswers429WithRetryAfter) {
    auto c = config(user_.server->port(), order_.server->port());
    c.rate_limit = {.rate = 0.5, .burst = 2, .max_clients = 100};
    start(std::move(c));
    EXPECT_EQ(send(http::Verb::get, "/api/v1/orders").result_int(), 200);
    EXPECT_EQ(send(http::Verb::get, "/api/v1/orders").result_int(), 200);
    auto limited = send(http::Verb::get, "/api/v1/orders");
    EXPECT_EQ(limited.result_int(), 429);
    EXPECT_EQ(limited[field::retry_after], "2");
    EXPECT_EQ(order_.hits, 2);
}

TEST_F(GatewayTest, TooManyHeaderFieldsAre431) {
    auto c = config(user_.server->port(), order_.server->port());
    c.max_headers = 20;
    start(std::move(c));
    http::Request request{http::Verb::get, "/api/v1/orders", 11};
    request.set(field::authorization, "Bearer " + token_);
    for (int i = 0; i < 30; ++i) {
        request.insert("X-Filler-" + std::to_string(i), "x");
    }
    EXPECT_EQ(send(std::move(request)).result_int(), 431);
    EXPECT_EQ(order_.hits, 0);
}

TEST_F(GatewayTest, UnreachableUpstreamIs503WithRetryAfter) {
    http::Router nothing;
    std::uint16_t closed_port = 0;
    {
        http::Server probe(io_, http::ServerOptions{}, nothing, http::ServerObservability{"x", nullptr, false, false});
        probe.start();
        closed_port = probe.port();
    }
    start(config(closed_port, order_.server->port()));
    auto response = send(http::Verb::get, "/api/v1/users/" + std::string(kUserId));
    EXPECT_EQ(response.result_int(), 503);
    EXPECT_EQ(response[field::retry_after], "1");
    EXPECT_EQ(response[field::content_type], "application/problem+json");
}

TEST_F(GatewayTest, SummaryFetchesUserAndOrdersConcurrently) {
    start();
    user_.delay = milliseconds(300);
    order_.delay = milliseconds(300);
    auto started = http::Clock::now();
    auto response = send(http::Verb::get, "/api/v1/users/" + std::string(kUserId) + "/summary?limit=2");
    auto elapsed = http::Clock::now() - started;
    ASSERT_EQ(response.result_int(), 200) << response.body();
    EXPECT_LT(elapsed, milliseconds(550)) << "the two calls ran one after the other";
    auto body = nlohmann::json::parse(response.body());
    EXPECT_EQ(body["user"]["name"], "Alice");
    EXPECT_EQ(body["orders"].size(), 2u);
    EXPECT_EQ(body["partial"], false);
    EXPECT_EQ(user_.last.target(), "/api/v1/users/" + std::string(kUserId));
    EXPECT_EQ(order_.last.target(), "/api/v1/orders?user_id=" + std::string(kUserId) + "&limit=2");
    EXPECT_EQ(order_.last[field::authorization], "Bearer " + token_);
    EXPECT_EQ(order_.last["X-Request-Id"], response["X-Request-Id"]);
}

TEST_F(GatewayTest, SummaryWithoutOrdersIsPartial) {
    start();
    order_.status = 500;
    auto response = send(http::Verb::get, "/api/v1/users/" + std::string(kUserId) + "/summary");
    ASSERT_EQ(response.result_int(), 200) << response.body();
    auto body = nlohmann::json::parse(response.body());
    EXPECT_EQ(body["user"]["id"], kUserId);
    EXPECT_EQ(body["orders"], nlohmann::json::array());
    EXPECT_EQ(body["partial"], true);
}

TEST_F(GatewayTest, SummaryPassesTheUserServicesRefusalOn) {
    start();
    user_.status = 404;
    EXPECT_EQ(send(http::Verb::get, "/api/v1/users/" + std::string(kUserId) + "/summary").result_int(), 404);
    auto hits = user_.hits + order_.hits;
    EXPECT_EQ(send(http::Verb::get, "/api/v1/users/not-a-uuid/summary").result_int(), 404);
    EXPECT_EQ(send(http::Verb::get, "/api/v1/users/" + std::string(kUserId) + "/summary?limit=0").result_int(), 400);
    EXPECT_EQ(user_.hits + order_.hits, hits);
    EXPECT_EQ(send(http::Verb::get, "/api/v1/users/" + std::string(kUserId) + "/summary", false).result_int(), 401);
}

}  // namespace
}  // namespace vigie::gateway
