#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kit/config/config.hpp"
#include "kit/http/router.hpp"
#include "kit/http/server.hpp"
#include "kit/log/log.hpp"
#include "kit/metrics/registry.hpp"
#include "kit/service/faults.hpp"

namespace vigie::trace {
class Tracer;
}

namespace vigie::service {

/// The settings every service shares, read once from the environment (see docs/configuration.md).
struct ServiceConfig {
    std::string name;
    http::ServerOptions api;
    http::ServerOptions admin;
    log::Level log_level = log::Level::info;
    bool access_log = true;
    bool metrics = true;
    std::string otlp_endpoint;  ///< OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; empty = spans are not exported
    double sample_ratio = 1.0;
    bool faults_enabled = false;
    std::chrono::milliseconds shutdown_delay{0};        ///< readiness fails this long before the listener closes
    std::chrono::milliseconds shutdown_timeout{10000};  ///< in-flight requests get this long to finish

    static ServiceConfig from_env(const config::Env& env, std::string name, std::uint16_t default_port,
                                  std::uint16_t default_admin_port);
};

/// A readiness check: true when the dependency is usable.
using ReadinessCheck = std::function<boost::asio::awaitable<bool>()>;

/// The skeleton every service runs in: construct → register routes → start → serve → on SIGTERM (or
/// request_stop) fail readiness → wait shutdown_delay → stop accepting → drain in-flight requests under
/// shutdown_timeout → stop. The public API and the admin listener (/healthz, /readyz, /metrics, /admin/faults)
/// are separate ports so operations endpoints are never public.
class Service {
  public:
    explicit Service(ServiceConfig config);
    ~Service();
    Service(const Service&) = delete;
    Service& operator=(const Service&) = delete;

    boost::asio::io_context& io() { return io_; }
    trace::Tracer& tracer() { return *tracer_; }
    const ServiceConfig& config() const { return config_; }
    http::Router& api() { return api_router_; }
    Faults& faults() { return faults_; }

    void add_readiness_check(std::string name, ReadinessCheck check);

    /// Binds both listeners (ports are known afterwards). Throws when a port cannot be bound.
    void start();
    /// Serves until stopped, then drains; returns the process exit code (0 after a clean drain).
    int run();
    /// Begins the graceful shutdown, as SIGTERM does. Safe from any thread.
    void request_stop();

    std::uint16_t api_port() const;
    std::uint16_t admin_port() const;
    bool ready() const { return ready_; }

  private:
    boost::asio::awaitable<void> shutdown();
    boost::asio::awaitable<bool> check_ready();
    boost::asio::awaitable<void> watch_readiness();
    void add_admin_routes();

    ServiceConfig config_;
    boost::asio::io_context io_{1};
    std::unique_ptr<trace::Tracer> tracer_;
    http::Router api_router_;
    http::Router admin_router_;
    Faults faults_;
    std::vector<std::pair<std::string, ReadinessCheck>> checks_;
    std::unique_ptr<http::Server> api_server_;
    std::unique_ptr<http::Server> admin_server_;
    std::vector<metrics::CollectorHandle> collectors_;
    std::unique_ptr<boost::asio::signal_set> signals_;
    metrics::Gauge* ready_gauge_ = nullptr;
    bool draining_ = false;
    bool stopping_ = false;
    std::atomic<bool> ready_{false};
    std::chrono::steady_clock::time_point started_at_;
};

}  // namespace vigie::service
