#include "kit/service/service.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <nlohmann/json.hpp>

#include "kit/http/problem.hpp"
#include "kit/metrics/process.hpp"
#include "kit/trace/trace.hpp"

#ifndef VIGIE_VERSION
#define VIGIE_VERSION "0.0.0"
#endif
#ifndef VIGIE_REVISION
#define VIGIE_REVISION "unknown"
#endif

namespace vigie::service {

namespace asio = boost::asio;

ServiceConfig ServiceConfig::from_env(const config::Env& env, std::string name, std::uint16_t default_port,
                                      std::uint16_t default_admin_port) {
    ServiceConfig config;
    config.name = std::move(name);
    auto address = env.string("BIND_ADDRESS", "127.0.0.1");
    config.api.address = address;
    config.api.port = env.port("HTTP_PORT", default_port);
    config.api.max_body_bytes =
        static_cast<std::size_t>(env.integer("HTTP_MAX_BODY_BYTES", 64 * 1024, 1024, 16 * 1024 * 1024));
    config.api.max_header_bytes =
        static_cast<std::size_t>(env.integer("HTTP_MAX_HEADER_BYTES", 8 * 1024, 1024, 64 * 1024));
    config.api.max_connections = static_cast<std::size_t>(env.integer("HTTP_MAX_CONNECTIONS", 4096, 1, 1000000));
    config.api.idle_timeout = env.duration("HTTP_IDLE_TIMEOUT", std::chrono::seconds(60));
    config.api.read_timeout = env.duration("HTTP_READ_TIMEOUT", std::chrono::seconds(10));
    config.api.write_timeout = env.duration("HTTP_WRITE_TIMEOUT", std::chrono::seconds(10));
    config.api.handler_timeout = env.duration("HTTP_HANDLER_TIMEOUT", std::chrono::seconds(10));
    config.admin = config.api;
    config.admin.address = env.string("ADMIN_BIND_ADDRESS", address);
    config.admin.port = env.port("ADMIN_PORT", default_admin_port);
    config.admin.max_connections = 256;

    auto level_text = env.string("LOG_LEVEL", "info");
    auto level = log::parse_level(level_text);
    if (!level) {
        throw config::ConfigError("LOG_LEVEL", "must be one of debug, info, warn, error (got '" + level_text + "')");
    }
    config.log_level = *level;
    config.access_log = env.boolean("ACCESS_LOG", true);
    config.metrics = env.boolean("METRICS_ENABLED", true);
    config.otlp_endpoint = env.string("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "");
    config.sample_ratio = env.number("OTEL_TRACES_SAMPLER_ARG", 1.0, 0.0, 1.0);
    config.faults_enabled = env.boolean("FAULTS_ENABLED", false);
    config.shutdown_delay = env.duration("SHUTDOWN_DELAY", std::chrono::milliseconds(0));
    config.shutdown_timeout = env.duration("SHUTDOWN_TIMEOUT", std::chrono::seconds(10));
    return config;
}

Service::Service(ServiceConfig config)
    : config_(std::move(config)), faults_(config_.faults_enabled), started_at_(std::chrono::steady_clock::now()) {
    log::init(config_.name, config_.log_level);
    trace::TracerOptions options;
    options.service_name = config_.name;
    options.otlp_endpoint = config_.otlp_endpoint;
    options.sample_ratio = config_.sample_ratio;
    tracer_ = std::make_unique<trace::Tracer>(options);
    auto& registry = metrics::registry();
    collectors_.push_back(metrics::register_process_metrics(registry));
    metrics::register_build_info(registry, config_.name, VIGIE_VERSION, VIGIE_REVISION);
    ready_gauge_ = &registry.gauge("service_ready", "1 when the service reports ready, 0 otherwise.", {"service"})
                        .with({config_.name});
}

Service::~Service() {
    api_server_.reset();
    admin_server_.reset();
}

void Service::add_readiness_check(std::string name, ReadinessCheck check) {
    checks_.emplace_back(std::move(name), std::move(check));
}

void Service::add_admin_routes() {
    admin_router_.add(http::Verb::get, "/healthz", [](http::RequestContext&) -> asio::awaitable<http::Response> {
        co_return http::json_response(http::Status::ok, {{"status", "ok"}});
    });
    admin_router_.add(http::Verb::get, "/readyz", [this](http::RequestContext&) -> asio::awaitable<http::Response> {
        nlohmann::json checks = nlohmann::json::object();
        bool ready = !draining_;
        for (auto& [name, check] : checks_) {
            bool ok = false;
            try {
                ok = co_await check();
            } catch (const std::exception&) {
                ok = false;
            }
            checks[name] = ok;
            ready = ready && ok;
        }
        ready_ = ready;
        ready_gauge_->set(ready ? 1 : 0);
        if (ready) {
            co_return http::json_response(http::Status::ok, {{"status", "ready"}, {"checks", checks}});
        }
        co_return http::problem(http::Status::service_unavailable,
                                draining_ ? "draining" : "a dependency is unavailable",
                                nlohmann::json{{"checks", checks}});
    });
    admin_router_.add(http::Verb::get, "/metrics", [](http::RequestContext&) -> asio::awaitable<http::Response> {
        http::Response response{http::Status::ok, 11};
        response.set(http::beast_http::field::content_type, metrics::kContentType);
        response.body() = metrics::registry().render();
        response.prepare_payload();
        co_return response;
    });
    faults_.add_routes(admin_router_);
}

void Service::start() {
    std::signal(SIGPIPE, SIG_IGN);
    add_admin_routes();
    api_server_ = std::make_unique<http::Server>(
        io_, config_.api, api_router_,
        http::ServerObservability{config_.name, tracer_.get(), config_.metrics, config_.access_log},
        faults_.middleware(io_));
    admin_server_ = std::make_unique<http::Server>(io_, config_.admin, admin_router_,
                                                   http::ServerObservability{config_.name, nullptr, false, false});
    api_server_->start();
    admin_server_->start();
    signals_ = std::make_unique<asio::signal_set>(io_, SIGTERM, SIGINT);
    signals_->async_wait([this](const boost::system::error_code& ec, int signal) {
        if (!ec) {
            log::info("signal received, draining", {{"process.signal", static_cast<std::int64_t>(signal)}});
            request_stop();
        }
    });
    asio::co_spawn(io_, watch_readiness(), asio::detached);
}

asio::awaitable<bool> Service::check_ready() {
    bool ready = !draining_;
    for (auto& [name, check] : checks_) {
        try {
            ready = (co_await check()) && ready;
        } catch (const std::exception&) {
            ready = false;
        }
    }
    co_return ready;
}

asio::awaitable<void> Service::watch_readiness() {
    asio::steady_timer timer(io_);
    bool announced = false;
    while (!stopping_) {
        ready_ = co_await check_ready();
        ready_gauge_->set(ready_ ? 1 : 0);
        if (ready_ && !announced) {
            announced = true;
            auto elapsed =
                std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started_at_);
            log::info("ready", {{"event.action", "ready"},
                                {"event.duration", static_cast<std::int64_t>(elapsed.count() * 1000)},
                                {"server.port", static_cast<std::int64_t>(api_port())},
                                {"admin.port", static_cast<std::int64_t>(admin_port())}});
        }
        timer.expires_after(std::chrono::seconds(1));
        co_await timer.async_wait(asio::use_awaitable);
    }
}

void Service::request_stop() {
    asio::post(io_, [this] {
        if (stopping_) {
            return;
        }
        stopping_ = true;
        asio::co_spawn(io_, shutdown(), asio::detached);
    });
}

asio::awaitable<void> Service::shutdown() {
    // Readiness fails first so that balancers stop sending before the listener closes.
    draining_ = true;
    ready_ = false;
    ready_gauge_->set(0);
    if (config_.shutdown_delay.count() > 0) {
        asio::steady_timer delay(io_, config_.shutdown_delay);
        co_await delay.async_wait(asio::use_awaitable);
    }
    auto deadline = std::chrono::steady_clock::now() + config_.shutdown_timeout;
    co_await api_server_->drain(deadline);
    auto unfinished = api_server_->in_flight();
    faults_.clear();
    co_await admin_server_->drain(std::chrono::steady_clock::now());
    tracer_->shutdown(std::chrono::seconds(2));
    log::info("stopped", {{"event.action", "stopped"}, {"requests.unfinished", static_cast<std::int64_t>(unfinished)}});
    if (signals_) {
        boost::system::error_code ignored;
        signals_->cancel(ignored);
    }
    io_.stop();
}

int Service::run() {
    if (!api_server_) {
        start();
    }
    io_.run();
    return 0;
}

std::uint16_t Service::api_port() const {
    return api_server_ ? api_server_->port() : 0;
}
std::uint16_t Service::admin_port() const {
    return admin_server_ ? admin_server_->port() : 0;
}

}  // namespace vigie::service
