#include "kit/service/faults.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "kit/http/json_body.hpp"
#include "kit/http/problem.hpp"
#include "kit/log/log.hpp"
#include "kit/metrics/registry.hpp"

namespace vigie::service {

namespace asio = boost::asio;

namespace {

constexpr std::size_t kChunkBytes = 1024 * 1024;

}  // namespace

Faults::Faults(bool enabled) : enabled_(enabled) {
    publish();
}

Faults::~Faults() {
    clear();
}

void Faults::clear() {
    latency_ms_ = 0;
    error_ratio_ = 0.0;
    slow_query_ms_ = 0;
    set_ballast(0);
    set_cpu_burn(0);
    publish();
}

nlohmann::json Faults::state() const {
    return {{"enabled", enabled_},
            {"latency_ms", latency_ms_.load()},
            {"error_ratio", error_ratio_.load()},
            {"slow_query_ms", slow_query_ms_.load()},
            {"memory_mb", ballast_mb_},
            {"cpu_threads", burners_.size()}};
}

void Faults::publish() {
    auto& gauge =
        metrics::registry().gauge("faults_active", "Fault switches currently on (incident drills).", {"fault"});
    gauge.with({"latency"}).set(latency_ms_ > 0 ? 1 : 0);
    gauge.with({"errors"}).set(error_ratio_ > 0 ? 1 : 0);
    gauge.with({"slow_query"}).set(slow_query_ms_ > 0 ? 1 : 0);
    gauge.with({"memory"}).set(ballast_mb_ > 0 ? 1 : 0);
    gauge.with({"cpu"}).set(burners_.empty() ? 0 : 1);
}

void Faults::set_ballast(std::size_t megabytes) {
    ballast_.clear();
    ballast_.shrink_to_fit();
    for (std::size_t i = 0; i < megabytes; ++i) {
        auto chunk = std::make_unique<char[]>(kChunkBytes);
        // Touch every page so the memory is resident, as a real leak's would be.
        std::memset(chunk.get(), static_cast<int>(i & 0x7F) + 1, kChunkBytes);
        ballast_.push_back(std::move(chunk));
    }
    ballast_mb_ = megabytes;
}

void Faults::set_cpu_burn(unsigned threads) {
    burning_ = false;
    for (auto& thread : burners_) {
        thread.join();
    }
    burners_.clear();
    if (threads == 0) {
        return;
    }
    burning_ = true;
    for (unsigned i = 0; i < threads; ++i) {
        burners_.emplace_back([this] {
            volatile std::uint64_t sink = 0;
            while (burning_.load(std::memory_order_relaxed)) {
                for (int j = 0; j < 100000; ++j) {
                    sink = sink + static_cast<std::uint64_t>(j) * 2654435761u;
                }
            }
        });
    }
}

void Faults::add_routes(http::Router& admin) {
    admin.add(http::Verb::get, "/admin/faults", [this](http::RequestContext&) -> asio::awaitable<http::Response> {
        co_return http::json_response(http::Status::ok, state());
    });
    admin.add(
        http::Verb::post, "/admin/faults", [this](http::RequestContext& context) -> asio::awaitable<http::Response> {
            if (!enabled_) {
                co_return http::problem(http::Status::forbidden,
                                        "fault switches are disabled; start the service with FAULTS_ENABLED=true");
            }
            auto body = http::parse_json_object(context.request);
            // Validate everything before changing anything: a bad request leaves the switches as they were.
            std::optional<std::int64_t> latency;
            std::optional<double> ratio;
            std::optional<std::int64_t> slow_query;
            std::optional<std::int64_t> memory;
            std::optional<std::int64_t> cpu;
            auto integer = [&](const char* key, std::int64_t max) -> std::optional<std::int64_t> {
                auto it = body.find(key);
                if (it == body.end()) {
                    return std::nullopt;
                }
                if (!it->is_number_integer() || it->get<std::int64_t>() < 0 || it->get<std::int64_t>() > max) {
                    throw http::ProblemError(
                        http::Status::bad_request,
                        std::string("'") + key + "' must be an integer from 0 to " + std::to_string(max));
                }
                return it->get<std::int64_t>();
            };
            for (const auto& [key, value] : body.items()) {
                if (key != "latency_ms" && key != "error_ratio" && key != "slow_query_ms" && key != "memory_mb" &&
                    key != "cpu_threads") {
                    throw http::ProblemError(http::Status::bad_request, "unknown fault '" + key + "'");
                }
            }
            latency = integer("latency_ms", 60000);
            slow_query = integer("slow_query_ms", 60000);
            memory = integer("memory_mb", 4096);
            cpu = integer("cpu_threads", 8);
            if (auto it = body.find("error_ratio"); it != body.end()) {
                if (!it->is_number() || it->get<double>() < 0.0 || it->get<double>() > 1.0) {
                    throw http::ProblemError(http::Status::bad_request, "'error_ratio' must be a number from 0 to 1");
                }
                ratio = it->get<double>();
            }
            if (latency) {
                latency_ms_ = *latency;
            }
            if (ratio) {
                error_ratio_ = *ratio;
            }
            if (slow_query) {
                slow_query_ms_ = *slow_query;
            }
            if (memory) {
                set_ballast(static_cast<std::size_t>(*memory));
            }
            if (cpu) {
                set_cpu_burn(static_cast<unsigned>(*cpu));
            }
            publish();
            auto now = state();
            log::warn("fault switches changed", {{"event.action", "fault-set"}, {"fault.state", now.dump()}});
            co_return http::json_response(http::Status::ok, now);
        });
    admin.add(http::Verb::delete_, "/admin/faults", [this](http::RequestContext&) -> asio::awaitable<http::Response> {
        if (!enabled_) {
            co_return http::problem(http::Status::forbidden, "fault switches are disabled");
        }
        clear();
        log::warn("fault switches cleared", {{"event.action", "fault-clear"}});
        co_return http::json_response(http::Status::ok, state());
    });
}

http::Middleware Faults::middleware(asio::io_context& io) {
    return [this, &io](http::RequestContext& context) -> asio::awaitable<std::optional<http::Response>> {
        if (auto latency = latency_ms_.load(std::memory_order_relaxed); latency > 0) {
            asio::steady_timer timer(io, std::chrono::milliseconds(latency));
            co_await timer.async_wait(asio::use_awaitable);
        }
        if (auto slow = slow_query_ms_.load(std::memory_order_relaxed); slow > 0 && slow_query_action_) {
            co_await slow_query_action_(std::chrono::milliseconds(slow), context.span);
        }
        if (auto ratio = error_ratio_.load(std::memory_order_relaxed); ratio > 0.0) {
            thread_local std::mt19937 generator{std::random_device{}()};
            if (std::uniform_real_distribution<double>(0.0, 1.0)(generator) < ratio) {
                co_return http::problem(http::Status::internal_server_error, "injected fault (error_ratio)");
            }
        }
        co_return std::nullopt;
    };
}

}  // namespace vigie::service
