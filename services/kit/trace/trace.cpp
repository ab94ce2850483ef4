#include "kit/trace/trace.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <thread>

#include "kit/trace/otlp_exporter.hpp"

namespace vigie::trace {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

template <std::size_t N>
void append_hex(std::string& out, const std::array<std::uint8_t, N>& bytes) {
    for (const std::uint8_t byte : bytes) {
        out.push_back(kHexDigits[byte >> 4]);
        out.push_back(kHexDigits[byte & 0xF]);
    }
}

/// Lowercase hex only: the spec makes uppercase invalid.
int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

template <std::size_t N>
bool parse_hex(std::string_view text, std::array<std::uint8_t, N>& bytes) {
    if (text.size() != 2 * N) {
        return false;
    }
    for (std::size_t i = 0; i < N; ++i) {
        const int high = hex_value(text[2 * i]);
        const int low = hex_value(text[2 * i + 1]);
        if (high < 0 || low < 0) {
            return false;
        }
        bytes[i] = static_cast<std::uint8_t>(high << 4 | low);
    }
    return true;
}

template <std::size_t N>
bool all_zero(const std::array<std::uint8_t, N>& bytes) {
    return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; });
}

/// Per-thread generator: no lock or shared cache line on the request path. Seeded from the OS once per thread.
std::mt19937_64& generator() {
    thread_local std::mt19937_64 engine = [] {
        std::random_device device;
        std::seed_seq seed{device(), device(), device(), device(), device(), device(), device(), device()};
        return std::mt19937_64(seed);
    }();
    return engine;
}

template <std::size_t N>
void fill_random_non_zero(std::array<std::uint8_t, N>& bytes) {
    auto& engine = generator();
    do {
        for (std::size_t i = 0; i < N; i += 8) {
            const std::uint64_t value = engine();
            for (std::size_t k = 0; k < 8 && i + k < N; ++k) {
                bytes[i + k] = static_cast<std::uint8_t>(value >> (8 * k));
            }
        }
    } while (all_zero(bytes));
}

std::uint64_t unix_nanos_now() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
}

}  // namespace

// ---- SpanContext and traceparent ----

bool SpanContext::valid() const {
    return !all_zero(trace_id) && !all_zero(span_id);
}

std::string SpanContext::trace_id_hex() const {
    std::string out;
    out.reserve(32);
    append_hex(out, trace_id);
    return out;
}

std::string SpanContext::span_id_hex() const {
    std::string out;
    out.reserve(16);
    append_hex(out, span_id);
    return out;
}

std::optional<SpanContext> parse_traceparent(std::string_view header) {
    // Optional whitespace around a header value is not part of it (RFC 9110 5.5).
    while (!header.empty() && (header.front() == ' ' || header.front() == '\t')) {
        header.remove_prefix(1);
    }
    while (!header.empty() && (header.back() == ' ' || header.back() == '\t')) {
        header.remove_suffix(1);
    }
    // version(2) - trace-id(32) - parent-id(16) - flags(2)
    constexpr std::size_t kLength = 55;
    if (header.size() < kLength || header[2] != '-' || header[35] != '-' || header[52] != '-') {
        return std::nullopt;
    }
    std::array<std::uint8_t, 1> version{};
    std::array<std::uint8_t, 1> flags{};
    SpanContext context;
    if (!parse_hex(header.substr(0, 2), version) || version[0] == 0xFF ||
        !parse_hex(header.substr(3, 32), context.trace_id) || !parse_hex(header.substr(36, 16), context.span_id) ||
        !parse_hex(header.substr(53, 2), flags)) {
        return std::nullopt;
    }
    if (header.size() > kLength) {
        // Version 00 has exactly four fields; a future version may append more, after a '-'.
        if (version[0] == 0 || header[kLength] != '-') {
            return std::nullopt;
        }
    }
    if (!context.valid()) {
        return std::nullopt;
    }
    context.sampled = (flags[0] & 0x01) != 0;
    return context;
}

std::string format_traceparent(const SpanContext& context) {
    std::string out;
    out.reserve(55);
    out.append("00-");
    append_hex(out, context.trace_id);
    out.push_back('-');
    append_hex(out, context.span_id);
    out.append(context.sampled ? "-01" : "-00");
    return out;
}

// ---- Span ----

Span::Span(Span&& other) noexcept
    : context_(other.context_),
      data_(std::move(other.data_)),
      exporter_(std::exchange(other.exporter_, nullptr)),
      steady_start_(other.steady_start_) {}

Span& Span::operator=(Span&& other) noexcept {
    if (this != &other) {
        end();
        context_ = other.context_;
        data_ = std::move(other.data_);
        exporter_ = std::exchange(other.exporter_, nullptr);
        steady_start_ = other.steady_start_;
    }
    return *this;
}

Span::~Span() {
    end();
}

void Span::set_attribute(std::string key, AttributeValue value) {
    if (data_) {
        data_->attributes.emplace_back(std::move(key), std::move(value));
    }
}

void Span::set_error(std::string_view message) {
    if (data_) {
        data_->error = true;
        data_->status_message.assign(message);
    }
}

void Span::end() {
    if (!data_) {
        return;
    }
    const auto elapsed = std::chrono::steady_clock::now() - steady_start_;
    data_->end_unix_nano =
        data_->start_unix_nano +
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
    exporter_->enqueue(std::move(data_));
    data_.reset();
}

// ---- Tracer ----

Tracer::Tracer(TracerOptions options, metrics::Registry& registry) : options_(std::move(options)) {
    if (options_.max_batch == 0 || options_.queue_capacity == 0 || options_.flush_interval.count() <= 0 ||
        options_.export_timeout.count() <= 0) {
        throw std::invalid_argument(
            "tracer: max_batch, queue_capacity, flush_interval and export_timeout must be positive");
    }
    const double ratio = std::isnan(options_.sample_ratio) ? 0.0 : std::clamp(options_.sample_ratio, 0.0, 1.0);
    sample_all_ = ratio >= 1.0;
    // Threshold over 63 bits so ratio * 2^63 always fits in a uint64.
    sample_threshold_ = static_cast<std::uint64_t>(ratio * 9223372036854775808.0);
    if (!options_.otlp_endpoint.empty()) {
        auto endpoint = parse_http_endpoint(options_.otlp_endpoint);
        if (!endpoint) {
            throw std::invalid_argument("tracer: OTLP endpoint must look like http://host:port/v1/traces, got " +
                                        options_.otlp_endpoint);
        }
        exporter_ = std::make_unique<BatchExporter>(options_, std::move(*endpoint), registry);
    }
}

Tracer::~Tracer() {
    shutdown(options_.export_timeout);
}

Span Tracer::start_span(std::string name, SpanKind kind, const SpanContext* parent) {
    Span span;
    const bool has_parent = parent != nullptr && parent->valid();
    if (has_parent) {
        span.context_.trace_id = parent->trace_id;
        span.context_.sampled = parent->sampled;
    } else {
        fill_random_non_zero(span.context_.trace_id);
        // Decided from the trace id (as OpenTelemetry's TraceIdRatioBased does) so it is reproducible anywhere.
        std::uint64_t low = 0;
        for (std::size_t i = 8; i < 16; ++i) {
            low = low << 8 | span.context_.trace_id[i];
        }
        span.context_.sampled = sample_all_ || (low >> 1) < sample_threshold_;
    }
    fill_random_non_zero(span.context_.span_id);
    if (!span.context_.sampled || !exporter_) {
        return span;
    }
    span.exporter_ = exporter_.get();
    span.steady_start_ = std::chrono::steady_clock::now();
    span.data_ = std::make_unique<SpanData>();
    SpanData& data = *span.data_;
    data.trace_id = span.context_.trace_id;
    data.span_id = span.context_.span_id;
    if (has_parent) {
        data.parent_span_id = parent->span_id;
    }
    data.name = std::move(name);
    data.kind = kind;
    data.start_unix_nano = unix_nanos_now();
    return span;
}

void Tracer::shutdown(std::chrono::milliseconds deadline) {
    if (exporter_) {
        exporter_->shutdown(deadline);
    }
}

}  // namespace vigie::trace
