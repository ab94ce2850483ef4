#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "kit/http/router.hpp"
#include "kit/http/server.hpp"

namespace vigie::service {

/// Runs the fault "slow queries": the service issues a query that takes this long (a real slow statement).
using SlowQueryAction =
    std::function<boost::asio::awaitable<void>(std::chrono::milliseconds, const trace::SpanContext&)>;

/// Admin-only fault switches for incident drills: added latency, error ratio, memory ballast, CPU burn and slow
/// queries. Off unless the service was configured with FAULTS_ENABLED=true; otherwise every change is refused (403).
/// Reads happen on the request path, so the switches are atomics.
class Faults {
  public:
    explicit Faults(bool enabled);
    ~Faults();
    Faults(const Faults&) = delete;
    Faults& operator=(const Faults&) = delete;

    /// GET/POST/DELETE /admin/faults on the admin router.
    void add_routes(http::Router& admin);
    /// Applies latency, errors and slow queries to the public API's requests.
    http::Middleware middleware(boost::asio::io_context& io);
    void set_slow_query_action(SlowQueryAction action) { slow_query_action_ = std::move(action); }

    /// Switches everything off (DELETE /admin/faults, and at shutdown).
    void clear();

  private:
    nlohmann::json state() const;
    void set_ballast(std::size_t megabytes);
    void set_cpu_burn(unsigned threads);
    void publish();

    bool enabled_;
    std::atomic<std::int64_t> latency_ms_{0};
    std::atomic<double> error_ratio_{0.0};
    std::atomic<std::int64_t> slow_query_ms_{0};
    std::size_t ballast_mb_ = 0;
    std::vector<std::unique_ptr<char[]>> ballast_;
    std::atomic<bool> burning_{false};
    std::vector<std::thread> burners_;
    SlowQueryAction slow_query_action_;
};

}  // namespace vigie::service
