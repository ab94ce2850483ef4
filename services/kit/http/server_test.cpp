#include "kit/http/server.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "kit/http/problem.hpp"
#include "kit/log/log.hpp"
#include "kit/metrics/registry.hpp"
#include "kit/trace/trace.hpp"

namespace vigie::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;
using namespace std::chrono_literals;

/// A client connection driven from the test thread (its own io_context), every operation under a deadline. A
/// deadline cancels the operation but keeps the socket open, so that "nothing yet" can be asked again.
class TestConnection {
  public:
    explicit TestConnection(std::uint16_t port) : socket_(io_) {
        run(1s, [&] {
            socket_.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                  [&](beast::error_code e) { connect_error_ = e; });
        });
    }

    const beast::error_code& connect_error() const { return connect_error_; }

    void write(std::string_view bytes) {
        beast::error_code ec;
        run(2s, [&] {
            asio::async_write(socket_, asio::buffer(bytes.data(), bytes.size()),
                              [&](beast::error_code e, std::size_t) { ec = e; });
        });
        ASSERT_FALSE(ec) << ec.message();
    }

    /// The next response, or nullopt (and error()) when the connection closed or nothing came in time.
    std::optional<Response> read(std::chrono::milliseconds timeout = 5s, bool to_head = false) {
        beast_http::response_parser<beast_http::string_body> parser;
        parser.body_limit(1 << 20);
        parser.skip(to_head);  // an answer to HEAD has a Content-Length but no body
        error_ = {};
        run(timeout, [&] {
            beast_http::async_read(socket_, buffer_, parser, [&](beast::error_code e, std::size_t) { error_ = e; });
        });
        if (error_) {
            return std::nullopt;
        }
        return parser.release();
    }

    /// One request on this connection and its response.
    std::optional<Response> request(std::string_view bytes) {
        write(bytes);
        return read();
    }

    /// True when the server closes the connection within `timeout` (no further bytes arrive first).
    bool closed_within(std::chrono::milliseconds timeout) {
        if (buffer_.size() > 0) {
            return false;
        }
        char byte = 0;
        beast::error_code ec;
        std::size_t n = 0;
        run(timeout, [&] {
            socket_.async_read_some(asio::buffer(&byte, 1), [&](beast::error_code e, std::size_t got) {
                ec = e;
                n = got;
            });
        });
        return n == 0 && (ec == asio::error::eof || ec == asio::error::connection_reset);
    }

    const beast::error_code& error() const { return error_; }

  private:
    template <class Start>
    void run(std::chrono::milliseconds timeout, Start start) {
        io_.restart();
        start();
        io_.run_for(timeout);
        if (!io_.stopped()) {
            // Out of time: cancel, and let the operation complete with operation_aborted.
            beast::error_code ignored;
            socket_.cancel(ignored);
            io_.run();
        }
    }

    asio::io_context io_;
    tcp::socket socket_;
    beast::flat_buffer buffer_;
    beast::error_code error_;
    beast::error_code connect_error_;
};

std::string get(std::string_view target, std::string_view extra_headers = "") {
    return "GET " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" + std::string(extra_headers) + "\r\n";
}

nlohmann::json body_json(const Response& response) {
    return nlohmann::json::parse(response.body());
}

/// What the handlers saw, written on the server thread and read by the test after a response arrived.
struct Seen {
    std::mutex mutex;
    std::string request_id;
    trace::SpanContext span;
    std::chrono::milliseconds budget{0};
    std::string route;
    std::string id;
};

class ServerTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() { log::init("server-test", log::Level::error); }

    ServerTest() {
        router_.add(Verb::get, "/x/{id}", [this](RequestContext& context) -> asio::awaitable<Response> {
            ++calls_;
            {
                std::lock_guard lock(seen_.mutex);
                seen_.request_id = context.request_id;
                seen_.span = context.span;
                seen_.budget = std::chrono::duration_cast<std::chrono::milliseconds>(context.deadline - Clock::now());
                seen_.route = std::string(context.route);
                seen_.id = std::string(context.params.get("id"));
            }
            co_return json_response(Status::ok, {{"id", context.params.get("id")}});
        });
        router_.add(Verb::post, "/echo", [this](RequestContext& context) -> asio::awaitable<Response> {
            ++calls_;
            Response response{Status::ok, 11};
            response.body() = context.request.body();
            co_return response;
        });
        router_.add(Verb::get, "/throw", [](RequestContext&) -> asio::awaitable<Response> {
            throw std::runtime_error("secret internal detail");
            co_return Response{};
        });
        router_.add(Verb::get, "/teapot", [](RequestContext&) -> asio::awaitable<Response> {
            throw ProblemError(Status::conflict, "already there");
            co_return Response{};
        });
        router_.add(Verb::get, "/slow", [this](RequestContext&) -> asio::awaitable<Response> {
            ++slow_started_;
            asio::steady_timer timer(io_, slow_for_);
            co_await timer.async_wait(asio::use_awaitable);
            co_return json_response(Status::ok, {{"slow", true}});
        });
    }

    void start(ServerOptions options = {}, ServerObservability observe = {}, Middleware middleware = nullptr) {
        server_ = std::make_unique<Server>(io_, std::move(options), router_, std::move(observe), std::move(middleware));
        server_->start();
        port_ = server_->port();
        thread_ = std::thread([this] { io_.run(); });
    }

    /// Runs `f` on the server's thread and returns its result.
    template <class F>
    auto on_io(F f) {
        std::packaged_task<decltype(f())()> task(std::move(f));
        auto result = task.get_future();
        asio::post(io_, [&task] { task(); });
        return result.get();
    }

    /// Polls a condition evaluated on the server's thread.
    template <class F>
    bool eventually(F condition, std::chrono::milliseconds timeout = 3s) {
        auto until = Clock::now() + timeout;
        while (Clock::now() < until) {
            if (on_io(condition)) {
                return true;
            }
            std::this_thread::sleep_for(5ms);
        }
        return false;
    }

    ~ServerTest() override {
        if (server_) {
            on_io([this] { server_.reset(); });
        }
        work_.reset();
        io_.stop();
        if (thread_.joinable()) {
            thread_.join();
        }
    }

    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
    Router router_;
    std::unique_ptr<Server> server_;
    std::thread thread_;
    std::uint16_t port_ = 0;
    std::atomic<int> calls_{0};
    Seen seen_;
    std::chrono::milliseconds slow_for_{300};
    std::atomic<int> slow_started_{0};
};

TEST_F(ServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
    start();
    TestConnection connection(port_);
    for (int i = 0; i < 3; ++i) {
        auto response = connection.request(get("/x/" + std::to_string(i)));
        ASSERT_TRUE(response) << connection.error().message();
        EXPECT_EQ(response->result(), Status::ok);
        EXPECT_TRUE(response->keep_alive());
        EXPECT_EQ(body_json(*response)["id"], std::to_string(i));
    }
    EXPECT_EQ(on_io([this] { return server_->connections(); }), 1U);
    EXPECT_EQ(calls_, 3);
}

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
    start();
    TestConnection connection(port_);
    connection.write(get("/x/a") + get("/x/b") + get("/x/c"));
    for (std::string id : {"a", "b", "c"}) {
        auto response = connection.read();
        ASSERT_TRUE(response) << connection.error().message();
        EXPECT_EQ(body_json(*response)["id"], id);
    }
}

TEST_F(ServerTest, Http10ClosesUnlessKeepAliveAsked) {
    start();
    TestConnection connection(port_);
    auto response = connection.request("GET /x/1 HTTP/1.0\r\n\r\n");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->version(), 10U);
    EXPECT_TRUE(connection.closed_within(2s));
}

TEST_F(ServerTest, NotFoundAndMethodNotAllowedAreProblems) {
    start();
    TestConnection connection(port_);
    auto response = connection.request(get("/nope"));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::not_found);
    EXPECT_EQ((*response)[beast_http::field::content_type], "application/problem+json");
    EXPECT_EQ(body_json(*response)["status"], 404);
    EXPECT_TRUE(response->keep_alive());

    response = connection.request("DELETE /x/1 HTTP/1.1\r\nHost: t\r\n\r\n");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::method_not_allowed);
    EXPECT_EQ((*response)[beast_http::field::allow], "GET");
    EXPECT_EQ(body_json(*response)["status"], 405);
    EXPECT_EQ(calls_, 0);
}

TEST_F(ServerTest, AnswersToHeadHaveNoBody) {
    router_.add(Verb::head, "/x/{id}", [](RequestContext& context) -> asio::awaitable<Response> {
        co_return json_response(Status::ok, {{"id", context.params.get("id")}});
    });
    start();
    TestConnection connection(port_);
    // Pipelined: any body byte after a HEAD answer would be read as the start of the next response.
    connection.write("HEAD /x/1 HTTP/1.1\r\nHost: t\r\n\r\nHEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n" + get("/nope"));
    auto response = connection.read(5s, true);
    ASSERT_TRUE(response) << connection.error().message();
    EXPECT_EQ(response->result(), Status::ok);
    EXPECT_EQ((*response)[beast_http::field::content_length], "10");  // what a GET would carry
    response = connection.read(5s, true);
    ASSERT_TRUE(response) << connection.error().message();
    EXPECT_EQ(response->result(), Status::not_found);
    response = connection.read();
    ASSERT_TRUE(response) << connection.error().message();
    EXPECT_EQ(response->result(), Status::not_found);
    EXPECT_EQ(body_json(*response)["status"], 404);
}

TEST_F(ServerTest, DotSegmentsAndEmptySegmentsAre400) {
    start();
    TestConnection connection(port_);
    for (std::string target : {"/x/..", "/x/../x/1", "/x//1", "/x/%2e%2E", "*", "http://evil/x/1"}) {
        SCOPED_TRACE(target);
        auto response = connection.request(get(target));
        ASSERT_TRUE(response);
        EXPECT_EQ(response->result(), Status::bad_request);
        EXPECT_EQ((*response)[beast_http::field::content_type], "application/problem+json");
    }
    EXPECT_EQ(calls_, 0);
}

TEST_F(ServerTest, BodyOverTheLimitIs413) {
    ServerOptions options;
    options.max_body_bytes = 1024;
    start(options);
    {
        TestConnection connection(port_);
        auto response = connection.request("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n" +
                                           std::string(5000, 'a'));
        ASSERT_TRUE(response) << connection.error().message();
        EXPECT_EQ(response->result(), Status::payload_too_large);
        EXPECT_FALSE(response->keep_alive());
        EXPECT_EQ(body_json(*response)["status"], 413);
    }
    {
        // The same limit for a chunked body, whose size is only known while reading it.
        TestConnection connection(port_);
        std::string chunk(800, 'b');
        auto response =
            connection.request("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n" + chunk +
                               "\r\n320\r\n" + chunk + "\r\n0\r\n\r\n");
        ASSERT_TRUE(response) << connection.error().message();
        EXPECT_EQ(response->result(), Status::payload_too_large);
    }
    {
        TestConnection connection(port_);
        auto response = connection.request("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n" +
                                           std::string(1024, 'c'));
        ASSERT_TRUE(response);
        EXPECT_EQ(response->result(), Status::ok);
        EXPECT_EQ(response->body().size(), 1024U);
    }
    EXPECT_EQ(calls_, 1);
}

TEST_F(ServerTest, HugeHeaderIs431) {
    ServerOptions options;
    options.max_header_bytes = 1024;
    start(options);
    TestConnection connection(port_);
    auto response = connection.request(get("/x/1", "X-Big: " + std::string(4000, 'h') + "\r\n"));
    ASSERT_TRUE(response) << connection.error().message();
    EXPECT_EQ(response->result(), Status::request_header_fields_too_large);
    EXPECT_FALSE(response->keep_alive());
    EXPECT_TRUE(connection.closed_within(2s));
    EXPECT_EQ(calls_, 0);
}

TEST_F(ServerTest, GarbageIs400AndCloses) {
    start();
    for (std::string garbage :
         {"HELLO\r\n\r\n", "GET /x/1 HTTP/7.1\r\n\r\n", "GET /x/1\r\n\r\n",
          "GET /x/1 HTTP/1.1\r\nNo colon here\r\n\r\n",
          "GET /x/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
          "GET /x/1 HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", "GET /x/1 HTTP/1.1\r\nHost : t\r\n\r\n"}) {
        SCOPED_TRACE(garbage);
        TestConnection connection(port_);
        auto response = connection.request(garbage);
        ASSERT_TRUE(response) << connection.error().message();
        EXPECT_EQ(response->result(), Status::bad_request);
        EXPECT_EQ((*response)[beast_http::field::content_type], "application/problem+json");
        EXPECT_TRUE(connection.closed_within(2s));
    }
    EXPECT_EQ(calls_, 0);
}

TEST_F(ServerTest, AmbiguousFramingIsRefused) {
    start();
    // Each could be framed differently by a proxy in front: request smuggling. The trailing "GET /x/smuggled"
    // must never be served.
    const std::string smuggled = get("/x/smuggled");
    for (std::string head : {
             "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
             "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
             "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
             "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\nContent-Length: 4\r\n\r\n",
             "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
             "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
             "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
             "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
             "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n",
             "POST /echo HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
         }) {
        SCOPED_TRACE(head);
        TestConnection connection(port_);
        auto response = connection.request(head + "0\r\n\r\n" + smuggled);
        ASSERT_TRUE(response) << connection.error().message();
        EXPECT_EQ(response->result(), Status::bad_request);
        EXPECT_FALSE(response->keep_alive());
        EXPECT_TRUE(connection.closed_within(2s));
    }
    EXPECT_EQ(calls_, 0);
}

TEST_F(ServerTest, ChunkedBodyIsRead) {
    start();
    TestConnection connection(port_);
    auto response = connection.request(
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
    EXPECT_EQ(response->body(), "abcde");
    EXPECT_TRUE(response->keep_alive());
}

TEST_F(ServerTest, ExpectContinueGetsAnInterimResponse) {
    start();
    TestConnection connection(port_);
    // Like curl for bodies over 1 KiB: the head, then the body only once "100 Continue" came.
    connection.write("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    auto interim = connection.read(1s);
    ASSERT_TRUE(interim) << connection.error().message();
    EXPECT_EQ(interim->result(), Status::continue_);
    connection.write("hello");
    auto response = connection.read();
    ASSERT_TRUE(response) << connection.error().message();
    EXPECT_EQ(response->result(), Status::ok);
    EXPECT_EQ(response->body(), "hello");
    // A body that is already there needs no interim answer.
    response =
        connection.request("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body(), "hi");
}

TEST_F(ServerTest, SlowClientIsClosedAfterReadTimeout) {
    ServerOptions options;
    options.read_timeout = 200ms;
    start(options);
    TestConnection connection(port_);
    auto started = Clock::now();
    // The head starts but trickles: each byte arrives well within the timeout, the whole head never does.
    connection.write("GET /x/1 HTTP/1.1\r\n");
    bool closed = false;
    for (int i = 0; i < 40 && !closed; ++i) {
        connection.write("X");
        closed = connection.closed_within(50ms);
    }
    auto elapsed = Clock::now() - started;
    EXPECT_TRUE(closed);
    EXPECT_GE(elapsed, 150ms);
    EXPECT_LT(elapsed, 1500ms);
    EXPECT_EQ(calls_, 0);
}

TEST_F(ServerTest, IdleConnectionIsClosedAfterIdleTimeout) {
    ServerOptions options;
    options.idle_timeout = 200ms;
    start(options);
    TestConnection fresh(port_);
    auto started = Clock::now();
    EXPECT_TRUE(fresh.closed_within(2s));
    EXPECT_GE(Clock::now() - started, 150ms);

    TestConnection used(port_);
    ASSERT_TRUE(used.request(get("/x/1")));
    started = Clock::now();
    EXPECT_TRUE(used.closed_within(2s));
    EXPECT_GE(Clock::now() - started, 150ms);
    EXPECT_TRUE(eventually([this] { return server_->connections() == 0; }));
}

TEST_F(ServerTest, TooManyConnectionsAreClosedAtOnce) {
    ServerOptions options;
    options.max_connections = 1;
    start(options);
    TestConnection first(port_);
    ASSERT_TRUE(first.request(get("/x/1")));
    TestConnection second(port_);
    EXPECT_TRUE(second.closed_within(2s));
    ASSERT_TRUE(first.request(get("/x/2")));
}

TEST_F(ServerTest, HandlerExceptionIs500WithoutDetails) {
    start();
    TestConnection connection(port_);
    auto response = connection.request(get("/throw"));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::internal_server_error);
    EXPECT_EQ((*response)[beast_http::field::content_type], "application/problem+json");
    EXPECT_EQ(response->body().find("secret"), std::string::npos);
    EXPECT_TRUE(response->keep_alive());
    // The connection survives the failed handler.
    ASSERT_TRUE(connection.request(get("/x/1")));
}

TEST_F(ServerTest, ProblemErrorBecomesItsStatus) {
    start();
    TestConnection connection(port_);
    auto response = connection.request(get("/teapot"));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::conflict);
    EXPECT_EQ(body_json(*response)["detail"], "already there");
    EXPECT_EQ(body_json(*response)["status"], 409);
}

TEST_F(ServerTest, RequestIdIsGeneratedKeptOrReplaced) {
    start();
    TestConnection connection(port_);
    auto response = connection.request(get("/x/1"));
    ASSERT_TRUE(response);
    std::string generated((*response)["X-Request-Id"]);
    EXPECT_EQ(generated.size(), 32U);
    EXPECT_EQ(generated.find_first_not_of("0123456789abcdef"), std::string::npos);
    {
        std::lock_guard lock(seen_.mutex);
        EXPECT_EQ(seen_.request_id, generated);
    }

    response = connection.request(get("/x/1", "X-Request-Id: abc-123_4.5\r\n"));
    ASSERT_TRUE(response);
    EXPECT_EQ((*response)["X-Request-Id"], "abc-123_4.5");

    for (std::string unsafe : {std::string("a b"), std::string("<script>"), std::string("a\"b"), std::string("x%0d%0a"),
                               std::string(129, 'a')}) {
        SCOPED_TRACE(unsafe);
        response = connection.request(get("/x/1", "X-Request-Id: " + unsafe + "\r\n"));
        ASSERT_TRUE(response);
        std::string replaced((*response)["X-Request-Id"]);
        EXPECT_NE(replaced, unsafe);
        EXPECT_EQ(replaced.size(), 32U);
    }
    // Problems carry it too.
    response = connection.request(get("/nope", "X-Request-Id: r1\r\n"));
    ASSERT_TRUE(response);
    EXPECT_EQ((*response)["X-Request-Id"], "r1");
}

TEST_F(ServerTest, TraceparentReachesTheHandler) {
    start();
    TestConnection connection(port_);
    const std::string parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    ASSERT_TRUE(connection.request(get("/x/1", "traceparent: " + parent + "\r\n")));
    {
        std::lock_guard lock(seen_.mutex);
        EXPECT_EQ(trace::format_traceparent(seen_.span), parent);
    }
    // A malformed one is ignored, not fatal.
    auto response = connection.request(get("/x/1", "traceparent: 00-zz-yy-01\r\n"));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
    std::lock_guard lock(seen_.mutex);
    EXPECT_FALSE(seen_.span.valid());
}

TEST_F(ServerTest, ServerSpanIsAChildOfTheCallersSpan) {
    trace::Tracer tracer(trace::TracerOptions{.service_name = "server-test"});
    ServerObservability observe;
    observe.tracer = &tracer;
    start({}, observe);
    TestConnection connection(port_);
    ASSERT_TRUE(
        connection.request(get("/x/1", "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n")));
    std::lock_guard lock(seen_.mutex);
    EXPECT_EQ(seen_.span.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
    EXPECT_NE(seen_.span.span_id_hex(), "b7ad6b7169203331");
    EXPECT_TRUE(seen_.span.valid());
}

TEST_F(ServerTest, MetricsUseTheRouteTemplate) {
    ServerObservability observe;
    observe.service = "server-test-metrics";
    observe.metrics = true;
    start({}, observe);
    TestConnection connection(port_);
    ASSERT_TRUE(connection.request(get("/x/42")));
    ASSERT_TRUE(connection.request(get("/x/43")));
    ASSERT_TRUE(connection.request(get("/nope/123")));
    ASSERT_TRUE(connection.request(get("/teapot")));
    auto text = metrics::registry().render();
    EXPECT_NE(text.find("http_server_requests_total{service=\"server-test-metrics\",route=\"/x/{id}\",method=\"GET\","
                        "status_class=\"2xx\"} 2"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("http_server_requests_total{service=\"server-test-metrics\",route=\"/teapot\",method=\"GET\","
                        "status_class=\"4xx\"} 1"),
              std::string::npos);
    EXPECT_NE(text.find("http_server_requests_total{service=\"server-test-metrics\",route=\"unmatched\",method=\"GET\","
                        "status_class=\"4xx\"} 1"),
              std::string::npos);
    EXPECT_NE(text.find("http_server_request_duration_seconds_count{service=\"server-test-metrics\",route=\"/x/{id}\","
                        "method=\"GET\",status_class=\"2xx\"} 2"),
              std::string::npos);
    EXPECT_EQ(text.find("/x/42"), std::string::npos);
    EXPECT_EQ(text.find("/nope"), std::string::npos);
}

TEST_F(ServerTest, MiddlewareCanShortCircuit) {
    std::atomic<int> middleware_calls{0};
    Middleware middleware = [&middleware_calls](RequestContext& context) -> asio::awaitable<std::optional<Response>> {
        ++middleware_calls;
        if (context.request.count("X-Block") > 0) {
            co_return problem(Status::too_many_requests, "blocked");
        }
        co_return std::nullopt;
    };
    start({}, {}, middleware);
    TestConnection connection(port_);
    auto response = connection.request(get("/x/1", "X-Block: 1\r\n"));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::too_many_requests);
    EXPECT_EQ(calls_, 0);
    response = connection.request(get("/x/1"));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
    EXPECT_EQ(calls_, 1);
    // Unmatched requests never reach the middleware (faults must not turn a 404 into a 500).
    ASSERT_TRUE(connection.request(get("/nope")));
    EXPECT_EQ(middleware_calls, 2);
}

TEST_F(ServerTest, CallerDeadlineLowersTheHandlerDeadline) {
    ServerOptions options;
    options.handler_timeout = 5s;
    start(options);
    TestConnection connection(port_);
    auto budget = [&](std::string headers) {
        EXPECT_TRUE(connection.request(get("/x/1", headers)));
        std::lock_guard lock(seen_.mutex);
        return seen_.budget;
    };
    auto lowered = budget("X-Request-Timeout-Ms: 150\r\n");
    EXPECT_LE(lowered, 150ms);
    EXPECT_GT(lowered, 50ms);
    auto defaulted = budget("");
    EXPECT_LE(defaulted, 5s);
    EXPECT_GT(defaulted, 4s);
    // A caller cannot raise it, and nonsense is ignored.
    EXPECT_GT(budget("X-Request-Timeout-Ms: 600000\r\n"), 4s);
    EXPECT_LE(budget("X-Request-Timeout-Ms: 600000\r\n"), 5s);
    EXPECT_GT(budget("X-Request-Timeout-Ms: -5\r\n"), 4s);
    EXPECT_GT(budget("X-Request-Timeout-Ms: 12abc\r\n"), 4s);
}

TEST_F(ServerTest, DrainFinishesInFlightRequestsAndClosesIdleConnections) {
    start();
    TestConnection busy(port_);
    TestConnection idle(port_);
    ASSERT_TRUE(idle.request(get("/x/1")));
    busy.write(get("/slow"));
    ASSERT_TRUE(eventually([this] { return slow_started_ == 1; }));
    EXPECT_EQ(on_io([this] { return server_->in_flight(); }), 1U);

    auto drained = asio::co_spawn(io_, server_->drain(Clock::now() + 5s), asio::use_future);
    EXPECT_EQ(drained.wait_for(50ms), std::future_status::timeout);  // the slow request is still running

    auto response = busy.read();
    ASSERT_TRUE(response) << busy.error().message();
    EXPECT_EQ(response->result(), Status::ok);
    EXPECT_FALSE(response->keep_alive());  // Connection: close while draining
    EXPECT_EQ(drained.wait_for(2s), std::future_status::ready);
    drained.get();
    EXPECT_EQ(on_io([this] { return server_->in_flight(); }), 0U);
    EXPECT_TRUE(idle.closed_within(2s));
    EXPECT_TRUE(busy.closed_within(2s));
    EXPECT_TRUE(eventually([this] { return server_->connections() == 0; }));

    TestConnection late(port_);
    EXPECT_TRUE(late.connect_error() || late.closed_within(1s));
}

TEST_F(ServerTest, DrainGivesUpAtItsDeadline) {
    slow_for_ = 10s;
    start();
    TestConnection busy(port_);
    busy.write(get("/slow"));
    ASSERT_TRUE(eventually([this] { return slow_started_ == 1; }));
    EXPECT_EQ(on_io([this] { return server_->in_flight(); }), 1U);
    auto started = Clock::now();
    auto drained = asio::co_spawn(io_, server_->drain(Clock::now() + 200ms), asio::use_future);
    ASSERT_EQ(drained.wait_for(3s), std::future_status::ready);
    EXPECT_GE(Clock::now() - started, 150ms);
    EXPECT_TRUE(busy.closed_within(2s));
}

TEST(StatusClass, Labels) {
    EXPECT_EQ(status_class(101), "1xx");
    EXPECT_EQ(status_class(200), "2xx");
    EXPECT_EQ(status_class(304), "3xx");
    EXPECT_EQ(status_class(499), "4xx");
    EXPECT_EQ(status_class(503), "5xx");
    EXPECT_EQ(status_class(999), "5xx");
}

TEST(NewRequestId, IsRandomHex) {
    auto a = new_request_id();
    auto b = new_request_id();
    EXPECT_EQ(a.size(), 32U);
    EXPECT_NE(a, b);
    EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
}

}  // namespace
}  // namespace vigie::http
