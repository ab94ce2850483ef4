#include "kit/http/client.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "kit/metrics/registry.hpp"
#include "kit/trace/trace.hpp"

namespace vigie::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;
using namespace std::chrono_literals;

/// What the scripted upstream does with one request.
struct Reply {
    enum class Then { keep_open, close, hang };
    std::string bytes;  ///< written as they are (may be empty)
    Then then = Then::keep_open;
};

Reply ok(std::string body = "ok") {
    return {"HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body,
            Reply::Then::keep_open};
}

/// A raw upstream on the test's io_context that answers by script and counts what it accepted and read.
class ScriptedUpstream {
  public:
    using Script = std::function<Reply(int connection, int request, const Request&)>;

    ScriptedUpstream(asio::io_context& io, Script script) : io_(io), acceptor_(io), script_(std::move(script)) {
        tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
        acceptor_.open(endpoint.protocol());
        acceptor_.bind(endpoint);
        acceptor_.listen();
        asio::co_spawn(io_, accept_loop(), asio::detached);
    }
    ~ScriptedUpstream() {
        beast::error_code ignored;
        acceptor_.close(ignored);
        for (auto& socket : sockets_) {
            socket->close(ignored);
        }
    }

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    int accepts() const { return accepts_; }
    const std::vector<Request>& requests() const { return requests_; }
    /// Connections the upstream has closed itself.
    int closed() const { return closed_; }

  private:
    asio::awaitable<void> accept_loop() {
        while (acceptor_.is_open()) {
            auto socket = std::make_shared<tcp::socket>(io_);
            beast::error_code ec;
            co_await acceptor_.async_accept(*socket, asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
                co_return;
            }
            sockets_.push_back(socket);
            asio::co_spawn(io_, serve(socket, accepts_++), asio::detached);
        }
    }

    asio::awaitable<void> serve(std::shared_ptr<tcp::socket> socket, int connection) {
        beast::flat_buffer buffer;
        for (int index = 0;; ++index) {
            beast_http::request_parser<beast_http::string_body> parser;
            beast::error_code ec;
            co_await beast_http::async_read(*socket, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
                co_return;
            }
            requests_.push_back(parser.release());
            auto reply = script_(connection, index, requests_.back());
            if (!reply.bytes.empty()) {
                co_await asio::async_write(*socket, asio::buffer(reply.bytes),
                                           asio::redirect_error(asio::use_awaitable, ec));
            }
            if (reply.then == Reply::Then::close) {
                socket->shutdown(tcp::socket::shutdown_both, ec);
                socket->close(ec);
                ++closed_;
                co_return;
            }
            if (reply.then == Reply::Then::hang) {
                co_return;  // the socket stays open in sockets_, unanswered
            }
        }
    }

    asio::io_context& io_;
    tcp::acceptor acceptor_;
    Script script_;
    std::vector<std::shared_ptr<tcp::socket>> sockets_;
    std::vector<Request> requests_;
    int accepts_ = 0;
    int closed_ = 0;
};

Request make_request(Verb method, std::string target, std::string body = {}) {
    Request request{method, target, 11};
    request.body() = std::move(body);
    return request;
}

class ClientTest : public ::testing::Test {
  protected:
    /// Runs the io_context until `operation` completes; rethrows what it threw.
    template <class T>
    T run(asio::awaitable<T> operation) {
        auto future = asio::co_spawn(io_, std::move(operation), asio::use_future);
        io_.restart();
        auto until = Clock::now() + 10s;
        while (future.wait_for(0s) != std::future_status::ready && Clock::now() < until) {
            io_.run_one_for(10ms);
        }
        return future.get();
    }

    Response send(Client& client, Request request, std::chrono::milliseconds budget = 2s,
                  const trace::SpanContext* parent = nullptr) {
        return run(client.send(std::move(request), Clock::now() + budget, parent));
    }

    /// ClientError's kind from sending `request`; fails the test when the call succeeds.
    std::optional<ClientError::Kind> send_error(Client& client, Request request,
                                                std::chrono::milliseconds budget = 2s) {
        try {
            send(client, std::move(request), budget);
        } catch (const ClientError& e) {
            return e.kind();
        }
        ADD_FAILURE() << "the call succeeded";
        return std::nullopt;
    }

    /// Lets the io_context run for a while (the upstream's own work).
    void pump(std::chrono::milliseconds duration) {
        io_.restart();
        io_.run_for(duration);
    }

    ClientOptions options(std::uint16_t port) {
        ClientOptions options;
        options.service = "client-test";
        options.upstream = "scripted";
        options.port = port;
        return options;
    }

    asio::io_context io_;
};

TEST_F(ClientTest, KeepAliveConnectionsAreReused) {
    ScriptedUpstream upstream(io_, [](int, int, const Request&) { return ok(); });
    Client client(io_.get_executor(), options(upstream.port()));
    for (int i = 0; i < 3; ++i) {
        auto response = send(client, make_request(Verb::get, "/a"));
        EXPECT_EQ(response.result(), Status::ok);
        EXPECT_EQ(response.body(), "ok");
    }
    EXPECT_EQ(upstream.accepts(), 1);
    EXPECT_EQ(upstream.requests().size(), 3U);
    EXPECT_EQ(client.idle_connections(), 1U);
}

TEST_F(ClientTest, ConnectionCloseIsNotPooled) {
    ScriptedUpstream upstream(io_, [](int, int, const Request&) {
        return Reply{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", Reply::Then::close};
    });
    Client client(io_.get_executor(), options(upstream.port()));
    send(client, make_request(Verb::get, "/a"));
    EXPECT_EQ(client.idle_connections(), 0U);
    send(client, make_request(Verb::get, "/a"));
    EXPECT_EQ(upstream.accepts(), 2);
}

TEST_F(ClientTest, SetsHostLengthDeadlineAndKeepAliveHeaders) {
    ScriptedUpstream upstream(io_, [](int, int, const Request&) { return ok(); });
    Client client(io_.get_executor(), options(upstream.port()));
    send(client, make_request(Verb::post, "/orders", R"({"a":1})"), 800ms);
    ASSERT_EQ(upstream.requests().size(), 1U);
    const auto& seen = upstream.requests()[0];
    EXPECT_EQ(seen[beast_http::field::host], "127.0.0.1:" + std::to_string(upstream.port()));
    EXPECT_EQ(seen[beast_http::field::content_length], "7");
    EXPECT_EQ(seen.body(), R"({"a":1})");
    EXPECT_TRUE(seen.keep_alive());
    auto remaining = std::stoi(std::string(seen["X-Request-Timeout-Ms"]));
    EXPECT_GT(remaining, 500);
    EXPECT_LE(remaining, 800);
    EXPECT_EQ(seen.count("traceparent"), 0U);
}

TEST_F(ClientTest, PropagatesTraceparent) {
    ScriptedUpstream upstream(io_, [](int, int, const Request&) { return ok(); });
    trace::SpanContext parent;
    parent.trace_id.fill(0xab);
    parent.span_id.fill(0xcd);
    {
        Client client(io_.get_executor(), options(upstream.port()));
        send(client, make_request(Verb::get, "/a"), 1s, &parent);
        EXPECT_EQ(upstream.requests().back()["traceparent"], trace::format_traceparent(parent));
    }
    {
        // With a tracer the upstream sees the client span: same trace, a new span id.
        trace::Tracer tracer(trace::TracerOptions{.service_name = "client-test"});
        Client client(io_.get_executor(), options(upstream.port()), &tracer);
        send(client, make_request(Verb::get, "/a"), 1s, &parent);
        auto sent = trace::parse_traceparent(upstream.requests().back()["traceparent"]);
        ASSERT_TRUE(sent);
        EXPECT_EQ(sent->trace_id, parent.trace_id);
        EXPECT_NE(sent->span_id, parent.span_id);
    }
}

TEST_F(ClientTest, ConnectRefused) {
    std::uint16_t port = 0;
    {
        tcp::acceptor closed(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        port = closed.local_endpoint().port();
    }
    Client client(io_.get_executor(), options(port));
    EXPECT_EQ(send_error(client, make_request(Verb::get, "/a")), ClientError::Kind::connect);
}

TEST_F(ClientTest, HostNameIsResolved) {
    // Compose and Kubernetes address upstreams by name ("http://user:8081"): the client looks the name up.
    ScriptedUpstream upstream(io_, [](int, int, const Request&) { return ok("by name"); });
    auto settings = options(upstream.port());
    settings.host = "localhost";
    Client client(io_.get_executor(), settings);
    auto response = send(client, make_request(Verb::get, "/a"));
    EXPECT_EQ(response.result_int(), 200);
    EXPECT_EQ(response.body(), "by name");
    EXPECT_EQ(upstream.requests().back()[beast_http::field::host], "localhost:" + std::to_string(upstream.port()));
}

TEST_F(ClientTest, NameThatDoesNotResolveIsAConnectError) {
    auto settings = options(80);
    settings.host = "no-such-host.invalid";  // RFC 6761: never resolves
    Client client(io_.get_executor(), settings);
    EXPECT_EQ(send_error(client, make_request(Verb::get, "/a")), ClientError::Kind::connect);
}

TEST_F(ClientTest, DeadlineIsATimeout) {
    ScriptedUpstream upstream(io_, [](int, int, const Request&) { return Reply{"", Reply::Then::hang}; });
    Client client(io_.get_executor(), options(upstream.port()));
    auto started = Clock::now();
    EXPECT_EQ(send_error(client, make_request(Verb::get, "/a"), 150ms), ClientError::Kind::timeout);
    auto elapsed = Clock::now() - started;
    EXPECT_GE(elapsed, 140ms);
    EXPECT_LT(elapsed, 1s);
    EXPECT_EQ(client.idle_connections(), 0U);  // a timed-out connection is never reused
    // Not resent: a timeout may mean the upstream is working on it.
    EXPECT_EQ(upstream.requests().size(), 1U);
}

TEST_F(ClientTest, ExpiredDeadlineFailsWithoutSending) {
    ScriptedUpstream upstream(io_, [](int, int, const Request&) { return ok(); });
    Client client(io_.get_executor(), options(upstream.port()));
    EXPECT_EQ(send_error(client, make_request(Verb::get, "/a"), -1ms), ClientError::Kind::timeout);
    EXPECT_EQ(upstream.accepts(), 0);
}

/// The first connection answers its first request, then takes the second and closes without an answer (the
/// upstream's keep-alive timeout racing the request); later connections answer normally.
Reply closes_on_second_request(int connection, int request, const Request&) {
    if (connection == 0 && request == 1) {
        return {"", Reply::Then::close};
    }
    return ok();
}

TEST_F(ClientTest, GetIsResentOnceWhenAReusedConnectionFails) {
    ScriptedUpstream upstream(io_, closes_on_second_request);
    Client client(io_.get_executor(), options(upstream.port()));
    send(client, make_request(Verb::get, "/a"));
    auto response = send(client, make_request(Verb::get, "/a"));
    EXPECT_EQ(response.result(), Status::ok);
    EXPECT_EQ(upstream.accepts(), 2);
    EXPECT_EQ(upstream.requests().size(), 3U);
}

TEST_F(ClientTest, PostIsNotResent) {
    ScriptedUpstream upstream(io_, closes_on_second_request);
    Client client(io_.get_executor(), options(upstream.port()));
    send(client, make_request(Verb::post, "/a"));
    EXPECT_EQ(send_error(client, make_request(Verb::post, "/a")), ClientError::Kind::transport);
    EXPECT_EQ(upstream.accepts(), 1);
    EXPECT_EQ(upstream.requests().size(), 2U);
}

TEST_F(ClientTest, PostWithIdempotencyKeyIsResent) {
    ScriptedUpstream upstream(io_, closes_on_second_request);
    Client client(io_.get_executor(), options(upstream.port()));
    send(client, make_request(Verb::post, "/a"));
    auto request = make_request(Verb::post, "/a");
    request.set("Idempotency-Key", "k1");
    EXPECT_EQ(send(client, std::move(request)).result(), Status::ok);
    EXPECT_EQ(upstream.accepts(), 2);
}

TEST_F(ClientTest, IdleConnectionClosedByTheUpstreamIsNotReused) {
    // The upstream answers (keep-alive) and then closes while the connection is idle in the pool.
    ScriptedUpstream upstream(io_, [](int, int, const Request&) { return Reply{ok().bytes, Reply::Then::close}; });
    Client client(io_.get_executor(), options(upstream.port()));
    send(client, make_request(Verb::post, "/a"));
    EXPECT_EQ(client.idle_connections(), 1U);
    pump(50ms);
    ASSERT_EQ(upstream.closed(), 1);
    // Even a POST, which is never resent, succeeds: the dead pooled connection is noticed before sending.
    EXPECT_EQ(send(client, make_request(Verb::post, "/a")).result(), Status::ok);
    EXPECT_EQ(upstream.accepts(), 2);
}

TEST_F(ClientTest, HeadResponseHasNoBody) {
    ScriptedUpstream upstream(io_, [](int, int, const Request&) {
        return Reply{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Reply::Then::keep_open};
    });
    Client client(io_.get_executor(), options(upstream.port()));
    auto response = send(client, make_request(Verb::head, "/a"), 1s);
    EXPECT_EQ(response.result(), Status::ok);
    EXPECT_EQ(response[beast_http::field::content_length], "5");
    EXPECT_TRUE(response.body().empty());
    // The connection is still in step: the next request reads its own response.
    EXPECT_EQ(send(client, make_request(Verb::head, "/a"), 1s).result(), Status::ok);
    EXPECT_EQ(upstream.accepts(), 1);
}

TEST_F(ClientTest, OversizedOrGarbledResponsesAreProtocolErrors) {
    ScriptedUpstream upstream(io_, [](int connection, int, const Request&) {
        if (connection == 0) {
            return Reply{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'x'),
                         Reply::Then::keep_open};
        }
        return Reply{"SMTP ready\r\n\r\n", Reply::Then::close};
    });
    auto settings = options(upstream.port());
    settings.max_response_body = 10;
    Client client(io_.get_executor(), settings);
    EXPECT_EQ(send_error(client, make_request(Verb::get, "/a")), ClientError::Kind::protocol);
    EXPECT_EQ(send_error(client, make_request(Verb::get, "/a")), ClientError::Kind::protocol);
}

TEST_F(ClientTest, RecordsDurationPerUpstream) {
    ScriptedUpstream upstream(io_, [](int, int request, const Request&) {
        if (request == 0) {
            return ok();
        }
        return Reply{"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", Reply::Then::keep_open};
    });
    auto settings = options(upstream.port());
    settings.service = "client-test-metrics";
    Client client(io_.get_executor(), settings);
    send(client, make_request(Verb::get, "/a"));
    EXPECT_EQ(send(client, make_request(Verb::get, "/a")).result(), Status::service_unavailable);
    auto text = metrics::registry().render();
    EXPECT_NE(text.find("http_client_request_duration_seconds_count{service=\"client-test-metrics\",upstream="
                        "\"scripted\",method=\"GET\",status_class=\"2xx\"} 1"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("http_client_request_duration_seconds_count{service=\"client-test-metrics\",upstream="
                        "\"scripted\",method=\"GET\",status_class=\"5xx\"} 1"),
              std::string::npos);
}

TEST(ParseHttpEndpoint, Accepts) {
    auto endpoint = parse_http_endpoint("http://127.0.0.1:8081");
    ASSERT_TRUE(endpoint);
    EXPECT_EQ(endpoint->host, "127.0.0.1");
    EXPECT_EQ(endpoint->port, 8081);
    endpoint = parse_http_endpoint("http://[::1]:65535/");
    ASSERT_TRUE(endpoint);
    EXPECT_EQ(endpoint->host, "::1");
    EXPECT_EQ(endpoint->port, 65535);
    endpoint = parse_http_endpoint("http://user-service:80");
    ASSERT_TRUE(endpoint);
    EXPECT_EQ(endpoint->host, "user-service");
}

TEST(ParseHttpEndpoint, Refuses) {
    for (std::string_view url :
         {"", "127.0.0.1:80", "https://127.0.0.1:443", "http://127.0.0.1", "http://127.0.0.1:", "http://127.0.0.1:0",
          "http://127.0.0.1:65536", "http://127.0.0.1:99999999999", "http://127.0.0.1:80/path", "http://:80",
          "http://127.0.0.1:8o", "http://127.0.0.1:+80", "http://[::1:80", "http://::1:80", "http://[]:80",
          "http://[::1]", "http://user@host:80", "HTTP://127.0.0.1:80", "http://127.0.0.1:80?x=1"}) {
        SCOPED_TRACE(url);
        EXPECT_FALSE(parse_http_endpoint(url));
    }
}

TEST(IsIdempotent, FollowsRfc9110) {
    for (auto verb : {Verb::get, Verb::head, Verb::options, Verb::put, Verb::delete_, Verb::trace}) {
        EXPECT_TRUE(is_idempotent(verb));
    }
    for (auto verb : {Verb::post, Verb::patch, Verb::connect}) {
        EXPECT_FALSE(is_idempotent(verb));
    }
}

}  // namespace
}  // namespace vigie::http
