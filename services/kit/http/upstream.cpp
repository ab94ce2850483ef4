#include "kit/http/upstream.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <random>

#include "kit/log/log.hpp"
#include "kit/metrics/registry.hpp"

namespace vigie::http {

namespace asio = boost::asio;

// ---------------------------------------------------------------------------------------------------------------
// CircuitBreaker

bool CircuitBreaker::available(Clock::time_point now) const {
    switch (state_) {
        case State::closed:
            return true;
        case State::open:
            return now >= open_until_;
        case State::half_open:
            return !probe_out_;
    }
    return false;
}

bool CircuitBreaker::acquire(Clock::time_point now) {
    switch (state_) {
        case State::closed:
            return true;
        case State::open:
            if (now < open_until_) {
                return false;
            }
            state_ = State::half_open;
            probe_out_ = true;
            return true;
        case State::half_open:
            if (probe_out_) {
                return false;
            }
            probe_out_ = true;
            return true;
    }
    return false;
}

void CircuitBreaker::record_success() {
    failures_ = 0;
    if (state_ == State::half_open) {
        state_ = State::closed;
        wait_ = options_.open_duration;
        probe_out_ = false;
    }
    // A success that started before the circuit opened says nothing about now: an open circuit stays open.
}

void CircuitBreaker::record_failure(Clock::time_point now) {
    switch (state_) {
        case State::closed:
            if (++failures_ >= std::max(options_.failure_threshold, 1u)) {
                state_ = State::open;
                open_until_ = now + wait_;
            }
            break;
        case State::half_open:
            wait_ = std::min(wait_ * 2, std::max(options_.max_open_duration, options_.open_duration));
            state_ = State::open;
            open_until_ = now + wait_;
            probe_out_ = false;
            break;
        case State::open:
            break;  // a request sent before the circuit opened
    }
}

void CircuitBreaker::reset() {
    state_ = State::closed;
    failures_ = 0;
    wait_ = options_.open_duration;
    probe_out_ = false;
}

// ---------------------------------------------------------------------------------------------------------------
// RetryBudget

RetryBudget::RetryBudget(RetryBudgetOptions options)
    : options_(options),
      slot_width_(std::max<Clock::duration>(std::chrono::duration_cast<Clock::duration>(options.window) / kSlots,
                                            Clock::duration(1))) {}

void RetryBudget::advance(Clock::time_point now) {
    std::int64_t slot = now.time_since_epoch() / slot_width_;
    if (slot <= current_slot_) {
        return;
    }
    auto stale = std::min<std::int64_t>(slot - current_slot_, kSlots);
    for (std::int64_t i = 1; i <= stale; ++i) {
        auto index = static_cast<std::size_t>((current_slot_ + i) % kSlots);
        requests_[index] = 0;
        retries_[index] = 0;
    }
    current_slot_ = slot;
}

void RetryBudget::record_request(Clock::time_point now) {
    advance(now);
    ++requests_[static_cast<std::size_t>(current_slot_ % kSlots)];
}

bool RetryBudget::try_retry(Clock::time_point now) {
    advance(now);
    std::uint64_t requests = 0;
    std::uint64_t retries = 0;
    for (std::size_t i = 0; i < kSlots; ++i) {
        requests += requests_[i];
        retries += retries_[i];
    }
    double allowed =
        std::max(static_cast<double>(options_.min_retries), options_.ratio * static_cast<double>(requests));
    if (static_cast<double>(retries) + 1 > allowed) {
        return false;
    }
    ++retries_[static_cast<std::size_t>(current_slot_ % kSlots)];
    return true;
}

// ---------------------------------------------------------------------------------------------------------------
// UpstreamGroup

std::optional<std::vector<Endpoint>> parse_endpoint_list(std::string_view text) {
    std::vector<Endpoint> endpoints;
    while (true) {
        auto comma = text.find(',');
        auto item = text.substr(0, comma);
        while (!item.empty() && item.front() == ' ') {
            item.remove_prefix(1);
        }
        while (!item.empty() && item.back() == ' ') {
            item.remove_suffix(1);
        }
        auto endpoint = parse_http_endpoint(item);
        if (!endpoint) {
            return std::nullopt;
        }
        endpoints.push_back(std::move(*endpoint));
        if (comma == std::string_view::npos) {
            break;
        }
        text.remove_prefix(comma + 1);
    }
    return endpoints;
}

namespace {

std::string address_of(const Endpoint& endpoint) {
    if (endpoint.host.find(':') != std::string::npos) {
        return "[" + endpoint.host + "]:" + std::to_string(endpoint.port);
    }
    return endpoint.host + ":" + std::to_string(endpoint.port);
}

bool retryable_status(unsigned status) {
    return status == 502 || status == 503 || status == 504;
}

}  // namespace

class UpstreamGroup::Impl : public std::enable_shared_from_this<UpstreamGroup::Impl> {
  public:
    struct Instance {
        UpstreamInstance config;
        std::string address;
        std::shared_ptr<Client> client;
        std::unique_ptr<Client> probe;
        std::unique_ptr<asio::steady_timer> timer;
        bool healthy = false;
        CircuitBreaker breaker;
        std::size_t outstanding = 0;
        metrics::Gauge* healthy_gauge = nullptr;
        metrics::Gauge* breaker_gauge = nullptr;
    };

    Impl(asio::any_io_executor executor, UpstreamOptions options, trace::Tracer* tracer)
        : executor_(std::move(executor)),
          options_(std::move(options)),
          tracer_(tracer),
          budget_(options_.retry_budget),
          random_(std::random_device{}()) {
        auto& registry = metrics::registry();
        auto& healthy =
            registry.gauge("upstream_healthy", "1 when the upstream instance passed its last readiness probe.",
                           {"service", "upstream", "instance"});
        auto& breaker = registry.gauge("upstream_circuit_state",
                                       "Circuit breaker of the upstream instance: 0 closed, 1 open, 2 half-open.",
                                       {"service", "upstream", "instance"});
        retries_ = &registry
                        .counter("upstream_retries_total", "Upstream attempts beyond the first one of a request.",
                                 {"service", "upstream"})
                        .with({options_.service, options_.name});
        budget_exhausted_ =
            &registry
                 .counter("upstream_retry_budget_exhausted_total",
                          "Retries not made because the upstream's retry budget was spent.", {"service", "upstream"})
                 .with({options_.service, options_.name});
        unavailable_ = &registry
                            .counter("upstream_unavailable_total",
                                     "Requests refused because no instance of the upstream could take them.",
                                     {"service", "upstream"})
                            .with({options_.service, options_.name});
        for (const auto& config : options_.instances) {
            auto instance = std::make_unique<Instance>();
            instance->config = config;
            instance->address = address_of(config.api);
            instance->breaker = CircuitBreaker(options_.breaker);
            instance->healthy = !config.admin.has_value();
            instance->client = make_client(config.api);
            if (config.admin) {
                ClientOptions probe;
                probe.service = options_.service;
                probe.upstream = options_.name + "_probe";
                probe.host = config.admin->host;
                probe.port = config.admin->port;
                probe.max_idle = 1;
                probe.max_response_body = 64 * 1024;
                probe.connect_timeout = std::min(options_.connect_timeout, options_.health_timeout);
                instance->probe = std::make_unique<Client>(executor_, probe);
                instance->timer = std::make_unique<asio::steady_timer>(executor_);
            }
            instance->healthy_gauge = &healthy.with({options_.service, options_.name, instance->address});
            instance->breaker_gauge = &breaker.with({options_.service, options_.name, instance->address});
            instance->healthy_gauge->set(instance->healthy ? 1 : 0);
            instance->breaker_gauge->set(0);
            instances_.push_back(std::move(instance));
        }
    }

    void start() {
        if (running_) {
            return;
        }
        running_ = true;
        for (std::size_t i = 0; i < instances_.size(); ++i) {
            if (instances_[i]->probe) {
                asio::co_spawn(executor_, probe_loop(shared_from_this(), i), asio::detached);
            }
        }
    }

    void stop() {
        running_ = false;
        for (auto& instance : instances_) {
            if (instance->timer) {
                instance->timer->cancel();
            }
        }
    }

    static asio::awaitable<Response> send(std::shared_ptr<Impl> self, Request request, CallOptions call,
                                          const trace::SpanContext* parent) {
        auto& impl = *self;
        impl.budget_.record_request(Clock::now());
        std::vector<std::size_t> tried;
        std::optional<Response> last_response;
        std::optional<UpstreamError> last_error;
        unsigned sent_attempts = 0;     // attempts that may have reached an upstream
        unsigned refused_attempts = 0;  // connections refused: the request never left
        while (true) {
            auto now = Clock::now();
            if (now >= call.deadline) {
                break;
            }
            auto index = impl.pick(now, tried);
            if (index == kNone) {
                break;
            }
            if (std::find(tried.begin(), tried.end(), index) != tried.end()) {
                // Only instances already tried are left: give the failure a moment to clear.
                auto pause = impl.backoff(sent_attempts + refused_attempts, call.deadline);
                asio::steady_timer timer(impl.executor_, pause);
                co_await timer.async_wait(asio::use_awaitable);
                now = Clock::now();
                index = impl.pick(now, tried);
                if (index == kNone || now >= call.deadline) {
                    break;
                }
            }
            auto& instance = *impl.instances_[index];
            tried.push_back(index);
            if (!instance.breaker.acquire(now)) {
                continue;  // another request took the half-open probe meanwhile
            }
            if (sent_attempts + refused_attempts > 0) {
                impl.retries_->inc();
            }
            auto attempt_deadline = call.deadline;
            if (call.try_timeout.count() > 0) {
                attempt_deadline = std::min(attempt_deadline, now + call.try_timeout);
            }
            auto client = instance.client;  // keeps this pool alive even if a probe replaces it meanwhile
            Request attempt = request;
            ++instance.outstanding;
            std::optional<Response> response;
            std::optional<ClientError> failure;
            try {
                Response received = co_await client->send(std::move(attempt), attempt_deadline, parent);
                response.emplace(std::move(received));
            } catch (const ClientError& e) {
                failure.emplace(e);
            }
            --instance.outstanding;
            bool refused = false;
            if (response) {
                auto status = response->result_int();
                if (status >= 500) {
                    instance.breaker.record_failure(Clock::now());
                } else {
                    instance.breaker.record_success();
                }
                impl.publish_breaker(instance);
                if (!call.retryable || !retryable_status(status)) {
                    co_return std::move(*response);
                }
                last_response = std::move(response);
                ++sent_attempts;
            } else {
                instance.breaker.record_failure(Clock::now());
                impl.publish_breaker(instance);
                refused = failure->kind() == ClientError::Kind::connect;
                if (refused) {
                    impl.mark_down(index, failure->what());
                    ++refused_attempts;
                } else {
                    ++sent_attempts;
                }
                auto kind = failure->kind() == ClientError::Kind::timeout ? UpstreamError::Kind::timeout
                                                                          : UpstreamError::Kind::failed;
                last_error.emplace(kind, failure->what());
                last_response.reset();
                if (!refused && !call.retryable) {
                    throw *last_error;
                }
            }
            // A refused connection cost the upstream nothing: it is retried outside the budget, once per instance.
            if (refused) {
                if (refused_attempts > impl.instances_.size()) {
                    break;
                }
                continue;
            }
            if (sent_attempts >= std::max(impl.options_.max_attempts, 1u)) {
                break;
            }
            if (!impl.budget_.try_retry(Clock::now())) {
                impl.budget_exhausted_->inc();
                break;
            }
        }
        if (last_response) {
            co_return std::move(*last_response);
        }
        if (sent_attempts == 0) {
            impl.unavailable_->inc();
            if (Clock::now() >= call.deadline) {
                throw UpstreamError(UpstreamError::Kind::timeout, impl.options_.name + ": deadline exceeded");
            }
            throw UpstreamError(UpstreamError::Kind::unavailable,
                                impl.options_.name + ": no instance is available" +
                                    (last_error ? std::string(" (") + last_error->what() + ")" : std::string()));
        }
        if (last_error) {
            throw *last_error;
        }
        throw UpstreamError(UpstreamError::Kind::timeout, impl.options_.name + ": deadline exceeded");
    }

    std::size_t healthy_count() const {
        return static_cast<std::size_t>(std::count_if(instances_.begin(), instances_.end(),
                                                      [](const auto& instance) { return instance->healthy; }));
    }

    std::vector<InstanceStatus> status() const {
        std::vector<InstanceStatus> out;
        for (const auto& instance : instances_) {
            out.push_back({instance->address, instance->healthy, instance->breaker.state(), instance->outstanding});
        }
        return out;
    }

    const UpstreamOptions& options() const { return options_; }

  private:
    static constexpr std::size_t kNone = static_cast<std::size_t>(-1);

    std::shared_ptr<Client> make_client(const Endpoint& endpoint) const {
        ClientOptions client;
        client.service = options_.service;
        client.upstream = options_.name;
        client.host = endpoint.host;
        client.port = endpoint.port;
        client.max_idle = options_.max_idle;
        client.max_response_body = options_.max_response_body;
        client.connect_timeout = options_.connect_timeout;
        return std::make_shared<Client>(executor_, client, tracer_);
    }

    /// The available instance with the fewest requests in flight, scanning from a rotating start so that ties
    /// are spread round-robin; instances already tried come last.
    std::size_t pick(Clock::time_point now, const std::vector<std::size_t>& tried) {
        auto count = instances_.size();
        if (count == 0) {
            return kNone;
        }
        std::size_t best = kNone;
        bool best_tried = true;
        auto start = next_++;
        for (std::size_t k = 0; k < count; ++k) {
            auto i = (start + k) % count;
            const auto& instance = *instances_[i];
            if (!instance.healthy || !instance.breaker.available(now)) {
                continue;
            }
            bool was_tried = std::find(tried.begin(), tried.end(), i) != tried.end();
            if (best == kNone || (best_tried && !was_tried) ||
                (best_tried == was_tried && instance.outstanding < instances_[best]->outstanding)) {
                best = i;
                best_tried = was_tried;
            }
        }
        return best;
    }

    Clock::duration backoff(unsigned attempt, Clock::time_point deadline) {
        std::chrono::milliseconds ceiling = options_.backoff_base * (1 << std::min(attempt, 10u));
        ceiling = std::min(ceiling, options_.backoff_max);
        std::uniform_int_distribution<std::int64_t> spread(0, std::max<std::int64_t>(ceiling.count(), 0));
        Clock::duration pause = std::chrono::milliseconds(spread(random_));
        return std::max(Clock::duration::zero(), std::min(pause, deadline - Clock::now()));
    }

    void publish_breaker(const Instance& instance) {
        instance.breaker_gauge->set(static_cast<double>(instance.breaker.state()));
    }

    void set_health(std::size_t index, bool healthy, std::string_view reason) {
        auto& instance = *instances_[index];
        if (instance.healthy == healthy) {
            return;
        }
        instance.healthy = healthy;
        instance.healthy_gauge->set(healthy ? 1 : 0);
        // A fresh pool either way: a leaving instance's idle connections are about to be closed by it, and a
        // returning one is a new process.
        instance.client = make_client(instance.config.api);
        if (healthy) {
            instance.breaker.reset();
            publish_breaker(instance);
            log::info("upstream instance ready", {{"upstream", options_.name}, {"server.address", instance.address}});
        } else {
            log::warn("upstream instance not ready",
                      {{"upstream", options_.name}, {"server.address", instance.address}, {"error.message", reason}});
        }
    }

    /// Passive health: a refused connection takes the instance out at once, until its probe passes again.
    void mark_down(std::size_t index, std::string_view reason) {
        if (instances_[index]->probe) {
            set_health(index, false, reason);
        }
    }

    static asio::awaitable<void> probe_loop(std::shared_ptr<Impl> self, std::size_t index) {
        auto& instance = *self->instances_[index];
        while (self->running_) {
            bool ready = false;
            std::string reason;
            Request request{Verb::get, self->options_.health_path, 11};
            try {
                auto response =
                    co_await instance.probe->send(std::move(request), Clock::now() + self->options_.health_timeout);
                ready = response.result_int() == 200;
                if (!ready) {
                    reason = "readiness probe answered " + std::to_string(response.result_int());
                }
            } catch (const ClientError& e) {
                reason = e.what();
            }
            if (!self->running_) {
                break;
            }
            self->set_health(index, ready, reason);
            instance.timer->expires_after(self->options_.health_interval);
            boost::system::error_code ec;
            co_await instance.timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
    }

    asio::any_io_executor executor_;
    UpstreamOptions options_;
    trace::Tracer* tracer_;
    std::vector<std::unique_ptr<Instance>> instances_;
    RetryBudget budget_;
    std::size_t next_ = 0;
    bool running_ = false;
    std::minstd_rand random_;
    metrics::Counter* retries_ = nullptr;
    metrics::Counter* budget_exhausted_ = nullptr;
    metrics::Counter* unavailable_ = nullptr;
};

UpstreamGroup::UpstreamGroup(asio::any_io_executor executor, UpstreamOptions options, trace::Tracer* tracer)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(options), tracer)) {}

UpstreamGroup::~UpstreamGroup() {
    impl_->stop();
}

void UpstreamGroup::start() {
    impl_->start();
}
void UpstreamGroup::stop() {
    impl_->stop();
}

asio::awaitable<Response> UpstreamGroup::send(Request request, CallOptions call, const trace::SpanContext* parent) {
    return Impl::send(impl_, std::move(request), call, parent);
}

const std::string& UpstreamGroup::name() const {
    return impl_->options().name;
}
std::size_t UpstreamGroup::healthy_count() const {
    return impl_->healthy_count();
}
std::vector<UpstreamGroup::InstanceStatus> UpstreamGroup::status() const {
    return impl_->status();
}

}  // namespace vigie::http
