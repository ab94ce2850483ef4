#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kit/metrics/registry.hpp"
#include "kit/trace/trace.hpp"

/// OTLP/HTTP JSON export of finished spans: encoding, a keep-alive HTTP client, and the batching thread.
namespace vigie::trace {

struct HttpEndpoint {
    std::string host;         // without brackets for IPv6 literals
    std::string port;         // "80" when the URL has none
    std::string target;       // path and query, "/" when the URL has none
    std::string host_header;  // host[:port] as written in the URL
};

/// `http://host[:port][/path]`; https and anything malformed -> nullopt (TLS to the collector is not supported:
/// it runs beside the service, or behind a mesh that adds mTLS).
std::optional<HttpEndpoint> parse_http_endpoint(std::string_view url);

/// Appends an ExportTraceServiceRequest in the OTLP JSON encoding: hex ids, integer enums, 64-bit integers as
/// strings, attributes as {key, value:{stringValue|intValue|doubleValue|boolValue}}.
void append_otlp_json(std::string& out, std::string_view service_name,
                      std::span<const std::pair<std::string, std::string>> resource_attributes,
                      std::span<const std::unique_ptr<SpanData>> spans);

/// Blocking HTTP/1.1 POST over one kept-alive connection, reconnecting after failures; every step (resolve aside)
/// bounded by the deadline. For one thread.
class OtlpHttpClient {
  public:
    struct Result {
        bool ok = false;
        bool retryable = true;  // network errors, 429 and 502/503/504; other statuses mean the data was refused
        unsigned status = 0;    // 0 when no response arrived
        std::string error;
    };

    explicit OtlpHttpClient(HttpEndpoint endpoint);
    ~OtlpHttpClient();
    OtlpHttpClient(const OtlpHttpClient&) = delete;
    OtlpHttpClient& operator=(const OtlpHttpClient&) = delete;

    /// `body` is borrowed for the call (moved into the request and back, so its buffer is reused).
    Result post(std::string& body, std::chrono::steady_clock::time_point deadline);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// The bounded queue between request threads and the export thread. The request path only ever does enqueue():
/// a short critical section, no allocation, no I/O; a full queue drops the span and counts it.
class BatchExporter {
  public:
    BatchExporter(const TracerOptions& options, HttpEndpoint endpoint, metrics::Registry& registry);
    /// Stops the thread; shutdown() first to flush.
    ~BatchExporter();
    BatchExporter(const BatchExporter&) = delete;
    BatchExporter& operator=(const BatchExporter&) = delete;

    void enqueue(std::unique_ptr<SpanData> span);
    void shutdown(std::chrono::milliseconds deadline);

  private:
    enum class Outcome { exported, failed };

    void run();
    /// Exports the retry batch, then one batch of whatever is queued, then full batches only (everything when
    /// `final`), until nothing more may go or an export fails.
    Outcome export_cycle(std::chrono::steady_clock::time_point deadline, bool final);
    bool send(std::vector<std::unique_ptr<SpanData>>& batch, std::chrono::steady_clock::time_point deadline,
              bool& retryable);
    std::size_t pop_batch(std::vector<std::unique_ptr<SpanData>>& batch, std::size_t minimum);

    const std::string service_name_;
    const std::vector<std::pair<std::string, std::string>> resource_attributes_;
    const std::size_t max_batch_;
    const std::chrono::milliseconds flush_interval_;
    const std::chrono::milliseconds export_timeout_;
    OtlpHttpClient client_;

    metrics::Counter& exported_;
    metrics::Counter& dropped_queue_full_;
    metrics::Counter& dropped_export_failed_;
    metrics::Counter& dropped_shutdown_;
    metrics::Histogram& export_success_duration_;
    metrics::Histogram& export_failure_duration_;
    metrics::Gauge& queue_size_;

    std::mutex mutex_;  // guards the ring and the flags below
    std::condition_variable wake_;
    std::vector<std::unique_ptr<SpanData>> ring_;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
    bool stopping_ = false;
    bool closed_ = false;  // after the final flush: nothing more is accepted
    std::chrono::steady_clock::time_point shutdown_deadline_;

    // Export thread only.
    std::vector<std::unique_ptr<SpanData>> retry_;  // one failed batch, retried once at the next interval
    std::string body_;
    bool failing_ = false;  // to log transitions, not every failed attempt

    std::once_flag shutdown_once_;
    std::thread thread_;  // last: started once everything above exists
};

}  // namespace vigie::trace
