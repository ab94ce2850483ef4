#pragma once

#include <array>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "kit/metrics/registry.hpp"

/// W3C trace context, spans, and their batched OTLP/HTTP export.
namespace vigie::trace {

struct SpanContext {
    std::array<std::uint8_t, 16> trace_id{};
    std::array<std::uint8_t, 8> span_id{};
    bool sampled = true;

    /// Both ids non-zero.
    bool valid() const;
    std::string trace_id_hex() const;
    std::string span_id_hex() const;
};

/// Strict W3C `traceparent`: lowercase hex, non-zero ids, version 00 exactly 55 characters; a higher version
/// (never ff) is read through its first four fields, as the spec requires. Anything else -> nullopt.
std::optional<SpanContext> parse_traceparent(std::string_view header);
/// `00-<trace id>-<span id>-<01|00>`.
std::string format_traceparent(const SpanContext& context);

enum class SpanKind { internal, server, client };

using AttributeValue = std::variant<std::string, std::int64_t, double, bool>;

/// A finished span as exported.
struct SpanData {
    std::array<std::uint8_t, 16> trace_id{};
    std::array<std::uint8_t, 8> span_id{};
    std::array<std::uint8_t, 8> parent_span_id{};  // all zero for a root span
    std::string name;
    SpanKind kind = SpanKind::internal;
    std::uint64_t start_unix_nano = 0;
    std::uint64_t end_unix_nano = 0;
    std::vector<std::pair<std::string, AttributeValue>> attributes;
    bool error = false;
    std::string status_message;
};

class BatchExporter;

/// Move-only RAII span: ends (and, if recording, is queued for export) on end() or destruction. Not thread-safe:
/// one thread at a time, like the request it describes. The Tracer that started it must outlive it.
class Span {
  public:
    /// An empty span: invalid context, records nothing.
    Span() = default;
    Span(Span&& other) noexcept;
    Span& operator=(Span&& other) noexcept;
    ~Span();

    const SpanContext& context() const { return context_; }
    /// False when unsampled or export is disabled: attributes are then discarded, so skip building costly ones.
    bool recording() const { return data_ != nullptr; }
    void set_attribute(std::string key, AttributeValue value);
    template <std::integral T>
    requires(!std::same_as<T, bool>) void set_attribute(std::string key, T value) {
        set_attribute(std::move(key), AttributeValue(static_cast<std::int64_t>(value)));
    }
    /// Status ERROR with a description.
    void set_error(std::string_view message);
    /// Idempotent; later set_* calls are ignored.
    void end();

  private:
    friend class Tracer;

    SpanContext context_;
    std::unique_ptr<SpanData> data_;  // non-null while recording and not yet ended
    BatchExporter* exporter_ = nullptr;
    std::chrono::steady_clock::time_point steady_start_;  // durations from the monotonic clock
};

// Every member has an explicit default so designated initialisers may name any subset under -Wextra.
struct TracerOptions {
    std::string service_name{};
    /// e.g. "http://127.0.0.1:4318/v1/traces" (plain HTTP only); empty = export disabled (spans still get ids and
    /// propagate, nothing is recorded or queued).
    std::string otlp_endpoint{};
    double sample_ratio = 1.0;
    std::size_t queue_capacity = 2048;
    std::size_t max_batch = 256;
    std::chrono::milliseconds flush_interval{1000};
    std::chrono::milliseconds export_timeout{2000};
    /// Extra resource attributes besides service.name (e.g. service.version, deployment.environment.name).
    std::vector<std::pair<std::string, std::string>> resource_attributes{};
};

class Tracer {
  public:
    /// Throws std::invalid_argument on a malformed endpoint or a zero max_batch, queue_capacity, flush_interval or
    /// export_timeout. Registers on
    /// `registry`: otel_spans_exported_total, otel_spans_dropped_total{reason}, otel_export_duration_seconds{outcome},
    /// otel_span_queue_size.
    explicit Tracer(TracerOptions options, metrics::Registry& registry = metrics::registry());
    /// Shuts down with export_timeout as the deadline if shutdown() was not called.
    ~Tracer();
    Tracer(const Tracer&) = delete;
    Tracer& operator=(const Tracer&) = delete;

    /// `parent` null or invalid -> a new trace, sampled with probability sample_ratio (decided from the trace id,
    /// so it is the same everywhere); otherwise the child keeps the parent's trace id and sampled flag.
    Span start_span(std::string name, SpanKind kind, const SpanContext* parent);

    /// Flushes what is queued within `deadline` (plus at most one export_timeout if an export is in flight), then
    /// stops the exporter thread. Spans ending afterwards are dropped and counted. Idempotent.
    void shutdown(std::chrono::milliseconds deadline);

    const TracerOptions& options() const { return options_; }

  private:
    TracerOptions options_;
    std::uint64_t sample_threshold_ = 0;  // sampled iff the trace id's low 63 bits are below it
    bool sample_all_ = true;
    std::unique_ptr<BatchExporter> exporter_;
};

}  // namespace vigie::trace
