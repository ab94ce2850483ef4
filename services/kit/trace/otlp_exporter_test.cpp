#include "kit/trace/otlp_exporter.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "kit/log/log.hpp"

namespace vigie::trace {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using json = nlohmann::json;

/// A tiny OTLP collector: a Beast server on 127.0.0.1, port 0, in its own thread. It records each request and
/// answers with scripted statuses (then 200), optionally closing the connection or never answering.
class TestCollector {
  public:
    /// close_silently: answers as if keeping the connection alive, then closes it (an idle timeout, say).
    enum class Mode { keep_alive, close_after_response, close_silently, never_respond };

    struct Request {
        std::string method;
        std::string target;
        std::string content_type;
        std::string body;
    };

    explicit TestCollector(std::deque<unsigned> statuses = {}, Mode mode = Mode::keep_alive)
        : statuses_(std::move(statuses)),
          mode_(mode),
          acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
        asio::co_spawn(io_, accept_loop(), asio::detached);
        thread_ = std::thread([this] { io_.run(); });
    }

    ~TestCollector() {
        io_.stop();
        thread_.join();
    }

    std::string endpoint() const {
        return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/v1/traces";
    }

    bool wait_for_requests(std::size_t count, std::chrono::milliseconds timeout = 5s) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, timeout, [&] { return requests_.size() >= count; });
    }

    std::vector<Request> requests() {
        const std::lock_guard lock(mutex_);
        return requests_;
    }

    int connections() {
        const std::lock_guard lock(mutex_);
        return connections_;
    }

  private:
    asio::awaitable<void> accept_loop() {
        for (;;) {
            beast::error_code ec;
            tcp::socket socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
                co_return;
            }
            {
                const std::lock_guard lock(mutex_);
                ++connections_;
            }
            asio::co_spawn(io_, serve(std::move(socket)), asio::detached);
        }
    }

    asio::awaitable<void> serve(tcp::socket socket) {
        beast::tcp_stream stream(std::move(socket));
        beast::flat_buffer buffer;
        for (;;) {
            beast::error_code ec;
            http::request<http::string_body> request;
            co_await http::async_read(stream, buffer, request, asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
                co_return;
            }
            unsigned status = 200;
            {
                const std::lock_guard lock(mutex_);
                requests_.push_back({std::string(request.method_string()), std::string(request.target()),
                                     std::string(request[http::field::content_type]), request.body()});
                if (!statuses_.empty()) {
                    status = statuses_.front();
                    statuses_.pop_front();
                }
            }
            changed_.notify_all();
            if (mode_ == Mode::never_respond) {
                continue;  // the next read waits until the client gives up and closes
            }
            http::response<http::string_body> response{static_cast<http::status>(status), 11};
            response.set(http::field::content_type, "application/json");
            response.body() = "{}";
            response.keep_alive(mode_ != Mode::close_after_response && request.keep_alive());
            response.prepare_payload();
            co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
            if (ec || !response.keep_alive() || mode_ == Mode::close_silently) {
                stream.socket().shutdown(tcp::socket::shutdown_send, ec);
                co_return;
            }
        }
    }

    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<Request> requests_;
    int connections_ = 0;
    std::deque<unsigned> statuses_;
    Mode mode_;
    asio::io_context io_;
    tcp::acceptor acceptor_;
    std::thread thread_;
};

/// An endpoint where nothing listens: bind port 0, remember it, close it.
std::string closed_port_endpoint() {
    asio::io_context io;
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const auto port = acceptor.local_endpoint().port();
    acceptor.close();
    return "http://127.0.0.1:" + std::to_string(port) + "/v1/traces";
}

double exported(metrics::Registry& registry) {
    return registry.counter("otel_spans_exported_total", "").with().value();
}

double dropped(metrics::Registry& registry, std::string_view reason) {
    return registry.counter("otel_spans_dropped_total", "", {"reason"}).with({reason}).value();
}

template <class Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!predicate()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

std::vector<json> spans_of(const std::string& body) {
    const json parsed = json::parse(body);
    std::vector<json> spans;
    for (const auto& resource_spans : parsed.at("resourceSpans")) {
        for (const auto& scope_spans : resource_spans.at("scopeSpans")) {
            for (const auto& span : scope_spans.at("spans")) {
                spans.push_back(span);
            }
        }
    }
    return spans;
}

json attribute(const json& span_or_resource, std::string_view key) {
    for (const auto& entry : span_or_resource.at("attributes")) {
        if (entry.at("key") == key) {
            return entry.at("value");
        }
    }
    return nullptr;
}

/// Keeps the exporter's warnings out of the test output, and lets tests check them.
class QuietLog : public ::testing::Test {
  protected:
    void SetUp() override {
        log::set_sink_for_test([this](std::string_view line) {
            const std::lock_guard lock(mutex_);
            lines_.emplace_back(line);
        });
    }
    void TearDown() override { log::set_sink_for_test({}); }
    std::vector<std::string> log_lines() {
        const std::lock_guard lock(mutex_);
        return lines_;
    }

  private:
    std::mutex mutex_;
    std::vector<std::string> lines_;
};

TEST(HttpEndpoint, ParsesHostPortAndTarget) {
    const auto endpoint = parse_http_endpoint("http://otel-collector:4318/v1/traces");
    ASSERT_TRUE(endpoint.has_value());
    EXPECT_EQ(endpoint->host, "otel-collector");
    EXPECT_EQ(endpoint->port, "4318");
    EXPECT_EQ(endpoint->target, "/v1/traces");
    EXPECT_EQ(endpoint->host_header, "otel-collector:4318");

    const auto defaults = parse_http_endpoint("HTTP://jaeger");
    ASSERT_TRUE(defaults.has_value());
    EXPECT_EQ(defaults->port, "80");
    EXPECT_EQ(defaults->target, "/");

    const auto v6 = parse_http_endpoint("http://[::1]:4318/v1/traces?x=1#frag");
    ASSERT_TRUE(v6.has_value());
    EXPECT_EQ(v6->host, "::1");
    EXPECT_EQ(v6->host_header, "[::1]:4318");
    EXPECT_EQ(v6->target, "/v1/traces?x=1");
}

TEST(HttpEndpoint, RejectsWhatItCannotServe) {
    for (const char* url : {"", "https://collector:4318/v1/traces", "collector:4318", "http://", "http://:4318/x",
                            "http://host:0/", "http://host:65536/", "http://host:12a/", "http://user:pw@host/",
                            "http://[::1/", "http://[::1]x/", "http://host:/"}) {
        EXPECT_FALSE(parse_http_endpoint(url).has_value()) << url;
    }
}

TEST(OtlpJson, EncodesSpansPerTheOtlpJsonMapping) {
    auto span = std::make_unique<SpanData>();
    span->trace_id = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
    span->span_id = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
    span->parent_span_id = {0, 0, 0, 0, 0, 0, 0, 1};
    span->name = "GET /users/{id}";
    span->kind = SpanKind::client;
    span->start_unix_nano = 1'700'000'000'000'000'001;
    span->end_unix_nano = 1'700'000'000'250'000'000;
    span->attributes.emplace_back("http.response.status_code", std::int64_t{503});
    span->attributes.emplace_back("ratio", 0.5);
    span->attributes.emplace_back("retry", true);
    span->attributes.emplace_back("note", std::string("quote\" and \xE2\x82\xAC"));
    span->error = true;
    span->status_message = "upstream 503";
    std::vector<std::unique_ptr<SpanData>> spans;
    spans.push_back(std::move(span));
    const std::pair<std::string, std::string> resource[] = {{"service.version", "0.1.0"}};
    std::string body;
    append_otlp_json(body, "gateway", resource, spans);
    EXPECT_EQ(body, R"({"resourceSpans":[{"resource":{"attributes":[)"
                    R"({"key":"service.name","value":{"stringValue":"gateway"}},)"
                    R"({"key":"telemetry.sdk.language","value":{"stringValue":"cpp"}},)"
                    R"({"key":"telemetry.sdk.name","value":{"stringValue":"vigie"}},)"
                    R"({"key":"service.version","value":{"stringValue":"0.1.0"}}]},)"
                    R"("scopeSpans":[{"scope":{"name":"vigie.kit.trace"},"spans":[{)"
                    R"("traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7",)"
                    R"("parentSpanId":"0000000000000001","name":"GET /users/{id}","kind":3,)"
                    R"("startTimeUnixNano":"1700000000000000001","endTimeUnixNano":"1700000000250000000",)"
                    R"("attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}},)"
                    R"({"key":"ratio","value":{"doubleValue":0.5}},{"key":"retry","value":{"boolValue":true}},)"
                    R"({"key":"note","value":{"stringValue":"quote\" and )"
                    "\xE2\x82\xAC"
                    R"("}}],"status":{"code":2,"message":"upstream 503"}}]}]}]})");
}

TEST(OtlpJson, RootSpanHasNoParentAndUnsetStatusIsOmitted) {
    auto span = std::make_unique<SpanData>();
    span->trace_id[15] = 1;
    span->span_id[7] = 2;
    span->attributes.emplace_back("nan", std::numeric_limits<double>::quiet_NaN());
    std::vector<std::unique_ptr<SpanData>> spans;
    spans.push_back(std::move(span));
    std::string body;
    append_otlp_json(body, "user", {}, spans);
    const auto parsed = spans_of(body);
    ASSERT_EQ(parsed.size(), 1u);
    EXPECT_FALSE(parsed[0].contains("parentSpanId"));
    EXPECT_FALSE(parsed[0].contains("status"));
    EXPECT_EQ(parsed[0].at("kind"), 1) << "SPAN_KIND_INTERNAL";
    EXPECT_EQ(attribute(parsed[0], "nan").at("doubleValue"), "NaN") << "proto3 JSON spelling";
}

using OtlpExport = QuietLog;

TEST_F(OtlpExport, PostsOtlpJsonToTheCollector) {
    TestCollector collector;
    metrics::Registry registry;
    Tracer tracer(TracerOptions{.service_name = "user",
                                .otlp_endpoint = collector.endpoint(),
                                .flush_interval = 1h,
                                .resource_attributes = {{"deployment.environment.name", "test"}}},
                  registry);
    const SpanContext remote = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").value();
    std::string server_span_id;
    {
        Span server = tracer.start_span("GET /api/v1/users/{id}", SpanKind::server, &remote);
        server_span_id = server.context().span_id_hex();
        server.set_attribute("http.request.method", "GET");
        server.set_attribute("http.response.status_code", 500);
        server.set_attribute("sampled.ratio", 0.25);
        server.set_attribute("cache.hit", false);
        server.set_error("database unavailable");
        Span query = tracer.start_span("SELECT users", SpanKind::client, &server.context());
        query.set_attribute("db.system", "postgresql");
    }  // the client span ends first, then the server span
    tracer.shutdown(5s);

    const auto requests = collector.requests();
    ASSERT_EQ(requests.size(), 1u);
    EXPECT_EQ(requests[0].method, "POST");
    EXPECT_EQ(requests[0].target, "/v1/traces");
    EXPECT_EQ(requests[0].content_type, "application/json");
    const json body = json::parse(requests[0].body);
    const json& resource = body.at("resourceSpans").at(0).at("resource");
    EXPECT_EQ(attribute(resource, "service.name"), json({{"stringValue", "user"}}));
    EXPECT_EQ(attribute(resource, "deployment.environment.name"), json({{"stringValue", "test"}}));

    const auto spans = spans_of(requests[0].body);
    ASSERT_EQ(spans.size(), 2u);
    const json& query = spans[0];
    const json& server = spans[1];
    EXPECT_EQ(server.at("name"), "GET /api/v1/users/{id}");
    EXPECT_EQ(server.at("kind"), 2) << "SPAN_KIND_SERVER";
    EXPECT_EQ(query.at("kind"), 3) << "SPAN_KIND_CLIENT";
    EXPECT_EQ(server.at("traceId"), "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_EQ(query.at("traceId"), server.at("traceId"));
    EXPECT_EQ(server.at("parentSpanId"), "00f067aa0ba902b7") << "the remote caller's span";
    EXPECT_EQ(server.at("spanId"), server_span_id);
    EXPECT_EQ(query.at("parentSpanId"), server.at("spanId"));
    ASSERT_TRUE(server.at("startTimeUnixNano").is_string());
    const auto start = std::stoull(server.at("startTimeUnixNano").get<std::string>());
    const auto end = std::stoull(server.at("endTimeUnixNano").get<std::string>());
    EXPECT_GE(end, start);
    EXPECT_GT(start, 1'600'000'000'000'000'000ull) << "Unix nanoseconds";
    EXPECT_EQ(attribute(server, "http.request.method"), json({{"stringValue", "GET"}}));
    EXPECT_EQ(attribute(server, "http.response.status_code"), json({{"intValue", "500"}}));
    EXPECT_EQ(attribute(server, "sampled.ratio"), json({{"doubleValue", 0.25}}));
    EXPECT_EQ(attribute(server, "cache.hit"), json({{"boolValue", false}}));
    EXPECT_EQ(server.at("status"), json({{"code", 2}, {"message", "database unavailable"}}));
    EXPECT_FALSE(query.contains("status"));
    EXPECT_EQ(exported(registry), 2);
    EXPECT_EQ(registry.histogram("otel_export_duration_seconds", "", {"outcome"}).with({"success"}).snapshot().count,
              1u);
}

TEST_F(OtlpExport, FullBatchesLeaveAtOnceOverOneKeptAliveConnection) {
    TestCollector collector;
    metrics::Registry registry;
    Tracer tracer(TracerOptions{.service_name = "user",
                                .otlp_endpoint = collector.endpoint(),
                                .max_batch = 2,
                                .flush_interval = 1h},  // only a full batch wakes the exporter
                  registry);
    for (int batch = 1; batch <= 3; ++batch) {
        tracer.start_span("a", SpanKind::internal, nullptr).end();
        tracer.start_span("b", SpanKind::internal, nullptr).end();
        ASSERT_TRUE(collector.wait_for_requests(static_cast<std::size_t>(batch))) << "batch " << batch;
    }
    tracer.shutdown(5s);
    EXPECT_EQ(collector.connections(), 1);
    for (const auto& request : collector.requests()) {
        EXPECT_EQ(spans_of(request.body).size(), 2u);
    }
    EXPECT_EQ(exported(registry), 6);
}

TEST_F(OtlpExport, SteadyFlowLeavesInFullBatchesOnly) {
    // Spans arriving while a batch is sent must not trickle out in small requests: after a cycle's first batch only
    // full batches follow; the remainder waits for the interval (here: shutdown, which sends everything).
    TestCollector collector;
    metrics::Registry registry;
    Tracer tracer(
        TracerOptions{
            .service_name = "user", .otlp_endpoint = collector.endpoint(), .max_batch = 4, .flush_interval = 1h},
        registry);
    for (int i = 0; i < 10; ++i) {
        tracer.start_span("s", SpanKind::internal, nullptr).end();
    }
    ASSERT_TRUE(collector.wait_for_requests(2));
    std::this_thread::sleep_for(200ms);
    ASSERT_EQ(collector.requests().size(), 2u) << "the 2 spans left over went out before a full batch or the interval";
    tracer.shutdown(5s);
    const auto requests = collector.requests();
    ASSERT_EQ(requests.size(), 3u);
    EXPECT_EQ(spans_of(requests[0].body).size(), 4u);
    EXPECT_EQ(spans_of(requests[1].body).size(), 4u);
    EXPECT_EQ(spans_of(requests[2].body).size(), 2u);
    EXPECT_EQ(exported(registry), 10);
}

TEST_F(OtlpExport, ReconnectsWhenTheCollectorClosesConnections) {
    TestCollector collector({}, TestCollector::Mode::close_after_response);
    metrics::Registry registry;
    Tracer tracer(
        TracerOptions{
            .service_name = "user", .otlp_endpoint = collector.endpoint(), .max_batch = 1, .flush_interval = 1h},
        registry);
    tracer.start_span("a", SpanKind::internal, nullptr).end();
    ASSERT_TRUE(collector.wait_for_requests(1));
    tracer.start_span("b", SpanKind::internal, nullptr).end();
    ASSERT_TRUE(collector.wait_for_requests(2));
    tracer.shutdown(5s);
    EXPECT_EQ(collector.connections(), 2);
    EXPECT_EQ(exported(registry), 2);
    EXPECT_EQ(dropped(registry, "export_failed"), 0);
}

TEST_F(OtlpExport, IdleConnectionClosedByTheCollectorIsReopenedWithoutLosingSpans) {
    TestCollector collector({}, TestCollector::Mode::close_silently);
    metrics::Registry registry;
    Tracer tracer(
        TracerOptions{
            .service_name = "user", .otlp_endpoint = collector.endpoint(), .max_batch = 1, .flush_interval = 1h},
        registry);
    tracer.start_span("a", SpanKind::internal, nullptr).end();
    ASSERT_TRUE(collector.wait_for_requests(1));
    std::this_thread::sleep_for(20ms);  // let the close reach the exporter's socket
    tracer.start_span("b", SpanKind::internal, nullptr).end();
    ASSERT_TRUE(collector.wait_for_requests(2));
    tracer.shutdown(5s);
    EXPECT_EQ(collector.connections(), 2);
    EXPECT_EQ(exported(registry), 2);
    EXPECT_EQ(dropped(registry, "export_failed"), 0);
    EXPECT_TRUE(log_lines().empty()) << "a stale kept-alive connection is not an export failure";
}

TEST_F(OtlpExport, RetriesAFailedBatchOnceAtTheNextInterval) {
    TestCollector collector({503});
    metrics::Registry registry;
    Tracer tracer(TracerOptions{.service_name = "user", .otlp_endpoint = collector.endpoint(), .flush_interval = 20ms},
                  registry);
    tracer.start_span("a", SpanKind::internal, nullptr).end();
    ASSERT_TRUE(collector.wait_for_requests(2));
    ASSERT_TRUE(eventually([&] { return exported(registry) == 1; }));
    const auto requests = collector.requests();
    EXPECT_EQ(spans_of(requests[0].body)[0].at("spanId"), spans_of(requests[1].body)[0].at("spanId"));
    EXPECT_EQ(dropped(registry, "export_failed"), 0);
    tracer.shutdown(5s);
    const auto lines = log_lines();
    ASSERT_EQ(lines.size(), 2u) << "one warning when failing starts, one note when it recovers";
    EXPECT_EQ(json::parse(lines[0]).at("message"), "trace export failing");
    EXPECT_EQ(json::parse(lines[0]).at("error.message"), "HTTP 503");
    EXPECT_EQ(json::parse(lines[1]).at("message"), "trace export recovered");
}

TEST_F(OtlpExport, DropsABatchThatFailsTwiceThenCarriesOn) {
    TestCollector collector({503, 503});
    metrics::Registry registry;
    Tracer tracer(TracerOptions{.service_name = "user", .otlp_endpoint = collector.endpoint(), .flush_interval = 20ms},
                  registry);
    tracer.start_span("lost", SpanKind::internal, nullptr).end();
    ASSERT_TRUE(eventually([&] { return dropped(registry, "export_failed") == 1; }));
    EXPECT_EQ(collector.requests().size(), 2u) << "tried once, retried once";
    tracer.start_span("kept", SpanKind::internal, nullptr).end();
    ASSERT_TRUE(eventually([&] { return exported(registry) == 1; }));
    tracer.shutdown(5s);
    EXPECT_EQ(spans_of(collector.requests().back().body)[0].at("name"), "kept");
}

TEST_F(OtlpExport, RefusedDataIsNotRetried) {
    TestCollector collector({400});
    metrics::Registry registry;
    Tracer tracer(TracerOptions{.service_name = "user", .otlp_endpoint = collector.endpoint(), .flush_interval = 10ms},
                  registry);
    tracer.start_span("bad", SpanKind::internal, nullptr).end();
    ASSERT_TRUE(eventually([&] { return dropped(registry, "export_failed") == 1; }));
    std::this_thread::sleep_for(50ms);  // several intervals: a retry would show up as a second request
    tracer.shutdown(5s);
    EXPECT_EQ(collector.requests().size(), 1u);
}

TEST_F(OtlpExport, ClosedPortDropsAndCountsWithoutBlocking) {
    metrics::Registry registry;
    Tracer tracer(TracerOptions{.service_name = "user",
                                .otlp_endpoint = closed_port_endpoint(),
                                .flush_interval = 10ms,
                                .export_timeout = 500ms},
                  registry);
    for (int i = 0; i < 10; ++i) {
        tracer.start_span("op", SpanKind::internal, nullptr).end();
    }
    ASSERT_TRUE(eventually([&] { return dropped(registry, "export_failed") == 10; }))
        << "dropped: " << dropped(registry, "export_failed");
    const auto start = std::chrono::steady_clock::now();
    tracer.shutdown(1s);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
    EXPECT_EQ(exported(registry), 0);
    EXPECT_GE(registry.histogram("otel_export_duration_seconds", "", {"outcome"}).with({"failure"}).snapshot().count,
              2u);
}

TEST_F(OtlpExport, HugeShutdownDeadlineDoesNotOverflow) {
    metrics::Registry registry;
    Tracer tracer(TracerOptions{.service_name = "user", .otlp_endpoint = closed_port_endpoint(), .flush_interval = 1h},
                  registry);
    tracer.start_span("op", SpanKind::internal, nullptr).end();
    // An overflowed (past) deadline would drop the span as "shutdown" without trying; the closed port refuses at once.
    tracer.shutdown(std::chrono::milliseconds::max());
    EXPECT_EQ(dropped(registry, "export_failed"), 1);
    EXPECT_EQ(dropped(registry, "shutdown"), 0);
}

TEST_F(OtlpExport, HungCollectorNeverBlocksEndingSpansAndMemoryStaysBounded) {
    TestCollector collector({}, TestCollector::Mode::never_respond);
    metrics::Registry registry;
    Tracer tracer(TracerOptions{.service_name = "user",
                                .otlp_endpoint = collector.endpoint(),
                                .queue_capacity = 4,
                                .max_batch = 2,
                                .flush_interval = 1h,
                                .export_timeout = 1s},
                  registry);
    tracer.start_span("a", SpanKind::internal, nullptr).end();
    tracer.start_span("b", SpanKind::internal, nullptr).end();
    ASSERT_TRUE(collector.wait_for_requests(1));  // the exporter is now stuck waiting for an answer

    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) {
        tracer.start_span("while hung", SpanKind::internal, nullptr).end();
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_LT(elapsed, 250ms) << "ending spans must not wait for the exporter (stuck for up to 1 s)";
    EXPECT_EQ(dropped(registry, "queue_full"), 16) << "4 fit in the queue, the rest are dropped";

    tracer.shutdown(100ms);
    EXPECT_EQ(exported(registry), 0);
    EXPECT_EQ(dropped(registry, "queue_full") + dropped(registry, "export_failed") + dropped(registry, "shutdown"), 22)
        << "every span is accounted for";
}

TEST(OtlpHttpClient, ReusesTheConnectionAndReportsStatuses) {
    TestCollector collector({202, 503, 400});
    OtlpHttpClient client(parse_http_endpoint(collector.endpoint()).value());
    std::string body = "{}";
    const auto deadline = [] { return std::chrono::steady_clock::now() + 2s; };
    const auto accepted = client.post(body, deadline());
    EXPECT_TRUE(accepted.ok);
    EXPECT_EQ(accepted.status, 202u);
    const auto unavailable = client.post(body, deadline());
    EXPECT_FALSE(unavailable.ok);
    EXPECT_TRUE(unavailable.retryable);
    const auto refused = client.post(body, deadline());
    EXPECT_FALSE(refused.ok);
    EXPECT_FALSE(refused.retryable);
    EXPECT_EQ(refused.error, "HTTP 400");
    EXPECT_EQ(collector.connections(), 1);
    ASSERT_EQ(collector.requests().size(), 3u);
    EXPECT_EQ(collector.requests()[2].body, "{}") << "the body buffer is handed back intact";
}

TEST(OtlpHttpClient, DeadlineBoundsAHungExchange) {
    TestCollector collector({}, TestCollector::Mode::never_respond);
    OtlpHttpClient client(parse_http_endpoint(collector.endpoint()).value());
    std::string body = "{}";
    const auto start = std::chrono::steady_clock::now();
    const auto result = client.post(body, start + 200ms);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_FALSE(result.ok);
    EXPECT_TRUE(result.retryable);
    EXPECT_EQ(result.status, 0u);
    EXPECT_GE(elapsed, 190ms);
    EXPECT_LT(elapsed, 2s);
}

}  // namespace
}  // namespace vigie::trace
