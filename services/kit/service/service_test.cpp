#include "kit/service/service.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "kit/http/problem.hpp"

namespace vigie::service {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::ip::tcp;
using http::Status;
using http::Verb;
using namespace std::chrono_literals;

/// One request on a fresh connection, from the test thread, answered within `timeout` (nullopt otherwise).
std::optional<http::Response> fetch(std::uint16_t port, Verb method, std::string target, std::string body = {},
                                    std::string content_type = "application/json",
                                    std::chrono::milliseconds timeout = 5s) {
    asio::io_context io;
    tcp::socket socket(io);
    http::Request request{method, target, 11};
    request.set(bhttp::field::host, "test");
    if (!body.empty() || method == Verb::post) {
        request.set(bhttp::field::content_type, content_type);
        request.body() = std::move(body);
    }
    request.prepare_payload();
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::string_body> parser;
    beast::error_code result = asio::error::timed_out;
    socket.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), [&](beast::error_code ec) {
        if (ec) {
            result = ec;
            return;
        }
        bhttp::async_write(socket, request, [&](beast::error_code ec, std::size_t) {
            if (ec) {
                result = ec;
                return;
            }
            bhttp::async_read(socket, buffer, parser, [&](beast::error_code ec, std::size_t) { result = ec; });
        });
    });
    io.run_for(timeout);
    if (result) {
        return std::nullopt;
    }
    return parser.release();
}

nlohmann::json json_of(const http::Response& response) {
    return nlohmann::json::parse(response.body());
}

class ServiceTest : public ::testing::Test {
  protected:
    ServiceConfig config() {
        ServiceConfig config;
        static int instances = 0;  // a name per test: metrics of earlier tests stay in the process-wide registry
        config.name = "service-test-" + std::to_string(++instances);
        config.log_level = log::Level::error;
        config.access_log = false;
        return config;
    }

    /// Builds, starts and runs the service on its own thread.
    void launch(ServiceConfig config) {
        service_ = std::make_unique<Service>(std::move(config));
        service_->api().add(Verb::get, "/api/ping", [](http::RequestContext&) -> asio::awaitable<http::Response> {
            co_return http::json_response(Status::ok, {{"pong", true}});
        });
        service_->api().add(Verb::get, "/api/slow", [this](http::RequestContext&) -> asio::awaitable<http::Response> {
            ++slow_started_;
            asio::steady_timer timer(service_->io(), 300ms);
            co_await timer.async_wait(asio::use_awaitable);
            co_return http::json_response(Status::ok, {{"slow", true}});
        });
        service_->add_readiness_check("database", [this]() -> asio::awaitable<bool> {
            if (check_throws_) {
                throw std::runtime_error("probe failed");
            }
            co_return dependency_up_.load();
        });
        service_->start();
        api_ = service_->api_port();
        admin_ = service_->admin_port();
        runner_ = std::thread([this] { exit_code_ = service_->run(); });
    }

    /// Stops the service and waits for run() to return; false when it does not within `timeout`.
    bool stop(std::chrono::milliseconds timeout = 5s) {
        service_->request_stop();
        auto until = Clock::now() + timeout;
        while (exit_code_ == -1 && Clock::now() < until) {
            std::this_thread::sleep_for(5ms);
        }
        if (exit_code_ == -1) {
            return false;
        }
        runner_.join();
        return true;
    }

    void TearDown() override {
        if (runner_.joinable()) {
            EXPECT_TRUE(stop());
            if (runner_.joinable()) {
                service_->io().stop();
                runner_.join();
            }
        }
        service_.reset();
    }

    using Clock = std::chrono::steady_clock;

    std::unique_ptr<Service> service_;
    std::thread runner_;
    std::atomic<int> exit_code_{-1};
    std::atomic<bool> dependency_up_{true};
    std::atomic<bool> check_throws_{false};
    std::atomic<int> slow_started_{0};
    std::uint16_t api_ = 0;
    std::uint16_t admin_ = 0;
};

TEST_F(ServiceTest, ListenersAreSeparate) {
    launch(config());
    ASSERT_NE(api_, 0);
    ASSERT_NE(admin_, 0);
    ASSERT_NE(api_, admin_);
    auto response = fetch(api_, Verb::get, "/api/ping");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
    EXPECT_EQ(json_of(*response)["pong"], true);
    // Operations endpoints are never on the public port, and the API is not on the admin port.
    for (std::string target : {"/healthz", "/readyz", "/metrics", "/admin/faults"}) {
        SCOPED_TRACE(target);
        response = fetch(api_, Verb::get, target);
        ASSERT_TRUE(response);
        EXPECT_EQ(response->result(), Status::not_found);
    }
    response = fetch(admin_, Verb::get, "/api/ping");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::not_found);
}

TEST_F(ServiceTest, HealthAndReadiness) {
    launch(config());
    auto response = fetch(admin_, Verb::get, "/healthz");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
    EXPECT_EQ(json_of(*response)["status"], "ok");

    response = fetch(admin_, Verb::get, "/readyz");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
    EXPECT_EQ(json_of(*response)["checks"]["database"], true);
    EXPECT_TRUE(service_->ready());

    dependency_up_ = false;
    response = fetch(admin_, Verb::get, "/readyz");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::service_unavailable);
    EXPECT_EQ((*response)[bhttp::field::content_type], "application/problem+json");
    EXPECT_EQ(json_of(*response)["checks"]["database"], false);
    EXPECT_FALSE(service_->ready());
    // Liveness does not depend on dependencies: restarting would not bring the database back.
    response = fetch(admin_, Verb::get, "/healthz");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);

    dependency_up_ = true;
    check_throws_ = true;
    response = fetch(admin_, Verb::get, "/readyz");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::service_unavailable);

    check_throws_ = false;
    response = fetch(admin_, Verb::get, "/readyz");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
}

TEST_F(ServiceTest, MetricsPassThroughTheAdminListener) {
    auto settings = config();
    auto name = settings.name;
    launch(std::move(settings));
    ASSERT_TRUE(fetch(api_, Verb::get, "/api/ping"));
    ASSERT_TRUE(fetch(admin_, Verb::get, "/healthz"));
    auto response = fetch(admin_, Verb::get, "/metrics");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
    EXPECT_EQ((*response)[bhttp::field::content_type], metrics::kContentType);
    const auto& text = response->body();
    EXPECT_NE(text.find("build_info{service=\"" + name + "\""), std::string::npos) << text;
    EXPECT_NE(text.find("process_resident_memory_bytes"), std::string::npos);
    EXPECT_NE(text.find("process_cpu_seconds_total"), std::string::npos);
    EXPECT_NE(text.find("service_ready{service=\"" + name + "\"}"), std::string::npos);
    EXPECT_NE(text.find("http_server_requests_total{service=\"" + name +
                        "\",route=\"/api/ping\",method=\"GET\",status_class=\"2xx\"} 1"),
              std::string::npos);
    // Probes and scrapes do not pollute the service's request metrics.
    EXPECT_EQ(text.find("route=\"/healthz\""), std::string::npos);
}

TEST_F(ServiceTest, FaultsAreRefusedWhenDisabled) {
    launch(config());
    auto response = fetch(admin_, Verb::post, "/admin/faults", R"({"latency_ms": 100})");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::forbidden);
    response = fetch(admin_, Verb::delete_, "/admin/faults");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::forbidden);
    response = fetch(admin_, Verb::get, "/admin/faults");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
    EXPECT_EQ(json_of(*response)["enabled"], false);
    EXPECT_EQ(json_of(*response)["latency_ms"], 0);
}

TEST_F(ServiceTest, FaultValuesAreValidatedBeforeAnythingChanges) {
    auto settings = config();
    settings.faults_enabled = true;
    launch(std::move(settings));
    for (std::string body :
         {R"({"latency_ms": -1})", R"({"latency_ms": 60001})", R"({"latency_ms": "5"})", R"({"latency_ms": 1.5})",
          R"({"latency_ms": 18446744073709551615})", R"({"error_ratio": 1.5})", R"({"error_ratio": -0.1})",
          R"({"error_ratio": "1"})", R"({"cpu_threads": 9})", R"({"memory_mb": -5})", R"({"bogus": 1})",
          R"({"latency_ms": 10, "error_ratio": 2})", R"({"latency_ms": 10, "bogus": true})", R"([1])", R"(not json)"}) {
        SCOPED_TRACE(body);
        auto response = fetch(admin_, Verb::post, "/admin/faults", body);
        ASSERT_TRUE(response);
        EXPECT_EQ(response->result(), Status::bad_request);
    }
    auto response = fetch(admin_, Verb::post, "/admin/faults", R"({"latency_ms": 10})", "text/plain");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::unsupported_media_type);

    response = fetch(admin_, Verb::get, "/admin/faults");
    ASSERT_TRUE(response);
    auto state = json_of(*response);
    EXPECT_EQ(state["enabled"], true);
    EXPECT_EQ(state["latency_ms"], 0);
    EXPECT_EQ(state["error_ratio"], 0.0);
    EXPECT_EQ(state["cpu_threads"], 0);
    EXPECT_EQ(state["memory_mb"], 0);
}

TEST_F(ServiceTest, LatencyFaultSlowsApiRequestsOnly) {
    auto settings = config();
    settings.faults_enabled = true;
    launch(std::move(settings));
    auto response = fetch(admin_, Verb::post, "/admin/faults", R"({"latency_ms": 200})");
    ASSERT_TRUE(response);
    ASSERT_EQ(response->result(), Status::ok);
    EXPECT_EQ(json_of(*response)["latency_ms"], 200);

    auto started = Clock::now();
    response = fetch(api_, Verb::get, "/api/ping");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
    EXPECT_GE(Clock::now() - started, 190ms);

    started = Clock::now();
    ASSERT_TRUE(fetch(admin_, Verb::get, "/healthz"));
    EXPECT_LT(Clock::now() - started, 150ms);

    response = fetch(admin_, Verb::get, "/metrics");
    ASSERT_TRUE(response);
    EXPECT_NE(response->body().find("faults_active{fault=\"latency\"} 1"), std::string::npos);

    response = fetch(admin_, Verb::delete_, "/admin/faults");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
    EXPECT_EQ(json_of(*response)["latency_ms"], 0);
    started = Clock::now();
    ASSERT_TRUE(fetch(api_, Verb::get, "/api/ping"));
    EXPECT_LT(Clock::now() - started, 150ms);
}

TEST_F(ServiceTest, ErrorRatioOneFailsEveryApiRequest) {
    auto settings = config();
    settings.faults_enabled = true;
    launch(std::move(settings));
    auto response = fetch(admin_, Verb::post, "/admin/faults", R"({"error_ratio": 1})");
    ASSERT_TRUE(response);
    ASSERT_EQ(response->result(), Status::ok);
    for (int i = 0; i < 5; ++i) {
        response = fetch(api_, Verb::get, "/api/ping");
        ASSERT_TRUE(response);
        EXPECT_EQ(response->result(), Status::internal_server_error);
        EXPECT_EQ((*response)[bhttp::field::content_type], "application/problem+json");
    }
    // Admin endpoints and unmatched routes are unaffected.
    response = fetch(admin_, Verb::get, "/healthz");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
    response = fetch(api_, Verb::get, "/api/nope");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::not_found);

    response = fetch(admin_, Verb::delete_, "/admin/faults");
    ASSERT_TRUE(response);
    response = fetch(api_, Verb::get, "/api/ping");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
}

TEST_F(ServiceTest, StopFailsReadinessFirstThenDrains) {
    auto settings = config();
    settings.shutdown_delay = 400ms;
    launch(std::move(settings));
    auto response = fetch(admin_, Verb::get, "/readyz");
    ASSERT_TRUE(response);
    ASSERT_EQ(response->result(), Status::ok);

    auto started = Clock::now();
    service_->request_stop();
    // During shutdown_delay readiness fails while the API still serves: balancers move away without errors.
    bool unready = false;
    for (int i = 0; i < 50 && !unready; ++i) {
        response = fetch(admin_, Verb::get, "/readyz");
        ASSERT_TRUE(response);
        unready = response->result() == Status::service_unavailable;
        if (!unready) {
            std::this_thread::sleep_for(5ms);
        }
    }
    EXPECT_TRUE(unready);
    EXPECT_EQ(json_of(*response)["detail"], "draining");
    EXPECT_FALSE(service_->ready());
    response = fetch(api_, Verb::get, "/api/ping");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
    EXPECT_LT(Clock::now() - started, 300ms);

    ASSERT_TRUE(stop());
    EXPECT_EQ(exit_code_, 0);
    EXPECT_GE(Clock::now() - started, 380ms);
    EXPECT_FALSE(fetch(api_, Verb::get, "/api/ping", {}, "", 500ms));
}

TEST_F(ServiceTest, StopLetsInFlightRequestsFinish) {
    launch(config());
    auto slow = std::async(std::launch::async, [this] { return fetch(api_, Verb::get, "/api/slow"); });
    auto until = Clock::now() + 3s;
    while (slow_started_ == 0 && Clock::now() < until) {
        std::this_thread::sleep_for(2ms);
    }
    ASSERT_EQ(slow_started_, 1);
    ASSERT_TRUE(stop());
    EXPECT_EQ(exit_code_, 0);
    auto response = slow.get();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result(), Status::ok);
    EXPECT_FALSE(response->keep_alive());
}

TEST_F(ServiceTest, StopIsIdempotent) {
    launch(config());
    service_->request_stop();
    service_->request_stop();
    ASSERT_TRUE(stop());
    EXPECT_EQ(exit_code_, 0);
}

}  // namespace
}  // namespace vigie::service
