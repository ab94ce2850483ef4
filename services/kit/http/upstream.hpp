#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "kit/http/client.hpp"
#include "kit/http/types.hpp"

namespace vigie::trace {
class Tracer;
}

namespace vigie::http {

struct BreakerOptions {
    unsigned failure_threshold = 5;                      ///< consecutive failures that open the circuit
    std::chrono::milliseconds open_duration{2000};       ///< wait before the first half-open probe
    std::chrono::milliseconds max_open_duration{30000};  ///< the wait doubles after each failed probe, up to this
};

/// The circuit breaker of one upstream instance. Closed: requests flow and consecutive failures are counted.
/// Open: requests are refused until the wait is over. Half-open: one probe request goes; its success closes the
/// circuit, its failure opens it again for twice as long. Pure logic on a given clock.
class CircuitBreaker {
  public:
    enum class State { closed, open, half_open };

    explicit CircuitBreaker(BreakerOptions options = {}) : options_(options), wait_(options.open_duration) {}

    /// Whether a request may go now, without claiming the half-open probe (for choosing an instance).
    bool available(Clock::time_point now) const;
    /// Claims the right to send one request: true when closed, or when the open wait is over and no probe is out
    /// (that request becomes the probe).
    bool acquire(Clock::time_point now);
    void record_success();
    void record_failure(Clock::time_point now);
    /// Forgets all history (a restarted instance starts closed).
    void reset();

    State state() const { return state_; }
    unsigned consecutive_failures() const { return failures_; }

  private:
    BreakerOptions options_;
    State state_ = State::closed;
    unsigned failures_ = 0;
    std::chrono::milliseconds wait_;
    Clock::time_point open_until_{};
    bool probe_out_ = false;
};

struct RetryBudgetOptions {
    double ratio = 0.2;         ///< retries allowed per request sent, over the window
    unsigned min_retries = 10;  ///< retries allowed per window whatever the traffic
    std::chrono::milliseconds window{10000};
};

/// Caps retries at `ratio` of the requests over a sliding window (plus a small floor for quiet periods), so that
/// an upstream in trouble sees at most (1 + ratio) times its normal load instead of max_attempts times.
class RetryBudget {
  public:
    explicit RetryBudget(RetryBudgetOptions options = {});
    void record_request(Clock::time_point now);
    /// Takes one retry from the budget; false when it is spent.
    bool try_retry(Clock::time_point now);

  private:
    static constexpr std::size_t kSlots = 10;
    void advance(Clock::time_point now);

    RetryBudgetOptions options_;
    Clock::duration slot_width_;
    std::int64_t current_slot_ = 0;
    std::uint64_t requests_[kSlots] = {};
    std::uint64_t retries_[kSlots] = {};
};

/// Why an upstream call produced no response.
class UpstreamError : public std::runtime_error {
  public:
    enum class Kind {
        unavailable,  ///< no instance may take requests (all unhealthy or their circuits open): 503
        timeout,      ///< the deadline passed: 504
        failed,       ///< connection or protocol failure on every attempt: 502
    };
    UpstreamError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    Kind kind() const { return kind_; }

  private:
    Kind kind_;
};

/// One replica: where its API listens and where its readiness is probed.
struct UpstreamInstance {
    Endpoint api;
    std::optional<Endpoint> admin;  ///< GET <admin><health_path> must answer 200; nullopt = not probed
};

struct UpstreamOptions {
    std::string service;  ///< the calling service: metric label
    std::string name;     ///< the upstream group, e.g. "user": metric label and span peer name
    std::vector<UpstreamInstance> instances;
    std::string health_path = "/readyz";
    std::chrono::milliseconds health_interval{1000};
    std::chrono::milliseconds health_timeout{500};
    std::size_t max_idle = 64;  ///< idle keep-alive connections per instance
    std::chrono::milliseconds connect_timeout{500};
    std::size_t max_response_body = 1024 * 1024;
    BreakerOptions breaker;
    RetryBudgetOptions retry_budget;
    unsigned max_attempts = 3;                   ///< attempts per request, first one included
    std::chrono::milliseconds backoff_base{20};  ///< before retrying the same instance: random in [0, base·2^n]
    std::chrono::milliseconds backoff_max{200};
};

/// How one request may be attempted.
struct CallOptions {
    Clock::time_point deadline;                ///< for the whole call, retries included
    std::chrono::milliseconds try_timeout{0};  ///< for one attempt; 0 = until the deadline
    /// The request may be sent again after it possibly reached an upstream (idempotent, or carries an
    /// Idempotency-Key the upstream honours). A request that never left (connection refused) is always retried.
    bool retryable = false;
};

/// A group of replicas of one upstream service: keep-alive pools per replica, least-outstanding balancing with a
/// rotating tie-break, active readiness probes (an instance that fails its probe, or refuses a connection, gets no
/// new requests until a probe passes again), a circuit breaker per replica, and retries within a budget.
/// Single-threaded: use it from the io_context it was made on.
class UpstreamGroup {
  public:
    UpstreamGroup(boost::asio::any_io_executor executor, UpstreamOptions options, trace::Tracer* tracer = nullptr);
    ~UpstreamGroup();
    UpstreamGroup(const UpstreamGroup&) = delete;
    UpstreamGroup& operator=(const UpstreamGroup&) = delete;

    /// Starts the readiness probes (the first round at once). Instances with a probe count as unhealthy until
    /// their first probe passes; instances without one count as healthy.
    void start();
    /// Stops probing.
    void stop();

    /// Sends `request` to a replica, retrying as `call` allows (on another replica when there is one). Returns the
    /// response of the last attempt, whatever its status; a retryable request is tried again after 502/503/504.
    /// Throws UpstreamError when no attempt produced a response.
    boost::asio::awaitable<Response> send(Request request, CallOptions call,
                                          const trace::SpanContext* parent = nullptr);

    const std::string& name() const;
    /// Instances whose last probe passed (readiness of the caller).
    std::size_t healthy_count() const;

    struct InstanceStatus {
        std::string address;
        bool healthy = false;
        CircuitBreaker::State breaker = CircuitBreaker::State::closed;
        std::size_t outstanding = 0;
    };
    std::vector<InstanceStatus> status() const;

    class Impl;

  private:
    std::shared_ptr<Impl> impl_;
};

/// Parses a comma-separated list of "http://host:port" URLs; nullopt when any entry is malformed or the list is
/// empty.
std::optional<std::vector<Endpoint>> parse_endpoint_list(std::string_view text);

}  // namespace vigie::http
