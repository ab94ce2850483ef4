#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

/// Prometheus metrics: lock-free metric updates, families of labelled children, text exposition format 0.0.4.
namespace vigie::metrics {

/// Content-Type of render()'s output.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

/// Default histogram buckets for latencies, in seconds.
inline const std::vector<double> kLatencyBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                    0.25,  0.5,    1,     2.5,  5,     10};

enum class MetricType { counter, gauge, histogram };
std::string_view to_string(MetricType type);

/// Monotonic counter. Lock-free; whole-number increments (the usual case) are a single atomic add.
class Counter {
  public:
    Counter() = default;
    Counter(const Counter&) = delete;
    Counter& operator=(const Counter&) = delete;

    /// Negative and NaN increments are ignored: a counter never goes down.
    void inc(double v = 1.0);
    double value() const;

  private:
    std::atomic<std::uint64_t> whole_{0};
    std::atomic<double> fraction_{0.0};
};

class Gauge {
  public:
    Gauge() = default;
    Gauge(const Gauge&) = delete;
    Gauge& operator=(const Gauge&) = delete;

    void set(double v) { value_.store(v, std::memory_order_relaxed); }
    void add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
    void inc() { add(1.0); }
    void dec() { add(-1.0); }
    double value() const { return value_.load(std::memory_order_relaxed); }

  private:
    std::atomic<double> value_{0.0};
};

/// A consistent-enough copy of a histogram: `cumulative[i]` counts observations <= bounds[i]; the extra last
/// entry is the +Inf bucket and always equals `count`.
struct HistogramSnapshot {
    std::vector<double> bounds;
    std::vector<std::uint64_t> cumulative;
    double sum = 0.0;
    std::uint64_t count = 0;
};

/// Fixed-bucket histogram. observe() is one atomic add on the bucket plus one on the sum.
class Histogram {
  public:
    /// `bounds`: strictly increasing, finite, without +Inf; must outlive the histogram (the family owns them).
    explicit Histogram(std::span<const double> bounds);
    Histogram(const Histogram&) = delete;
    Histogram& operator=(const Histogram&) = delete;

    /// NaN observations are ignored.
    void observe(double v);
    HistogramSnapshot snapshot() const;
    std::span<const double> bounds() const { return bounds_; }

  private:
    std::span<const double> bounds_;
    // Per-bucket (not cumulative) counts, one more than bounds_ for +Inf; cumulated only on scrape.
    std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
    std::atomic<double> sum_{0.0};
};

/// What Registry stores: the part of a family that does not depend on the metric type.
class FamilyBase {
  public:
    FamilyBase(std::string name, std::string help, MetricType type, std::vector<std::string> label_names);
    virtual ~FamilyBase() = default;
    FamilyBase(const FamilyBase&) = delete;
    FamilyBase& operator=(const FamilyBase&) = delete;

    const std::string& name() const { return name_; }
    const std::string& help() const { return help_; }
    MetricType type() const { return type_; }
    const std::vector<std::string>& label_names() const { return label_names_; }
    /// Appends HELP, TYPE and every child's samples (nothing for a labelled family without children).
    virtual void render(std::string& out) const = 0;

  protected:
    /// Throws std::invalid_argument unless there is one value per label name.
    void check_label_count(std::size_t count) const;
    /// `a="x",b="y"` with escaped values, computed once per child so scrapes only copy it.
    std::string format_labels(std::span<const std::string_view> values) const;

  private:
    std::string name_;
    std::string help_;
    MetricType type_;
    std::vector<std::string> label_names_;
};

/// Orders children by label values and finds them without building a key (heterogeneous lookup).
struct LabelValuesLess {
    using is_transparent = void;
    bool operator()(const std::vector<std::string>& a, const std::vector<std::string>& b) const;
    bool operator()(const std::vector<std::string>& a, std::span<const std::string_view> b) const;
    bool operator()(std::span<const std::string_view> a, const std::vector<std::string>& b) const;
};

template <class Metric>
class Family final : public FamilyBase {
  public:
    /// `buckets` only for histograms (validated by Registry).
    Family(std::string name, std::string help, std::vector<std::string> label_names, std::vector<double> buckets = {});

    /// The child for these label values (in label-name order), created on first use. The reference stays valid for
    /// the registry's lifetime: resolve it once at start-up, not per request. Wrong value count ->
    /// std::invalid_argument.
    Metric& with(std::initializer_list<std::string_view> label_values = {});
    Metric& with(std::span<const std::string_view> label_values);

    const std::vector<double>& buckets() const { return buckets_; }
    void render(std::string& out) const override;

  private:
    struct Child {
        std::string labels;
        std::unique_ptr<Metric> metric;
    };

    std::vector<double> buckets_;
    std::vector<std::string> bucket_labels_;  // `le="0.005"`, precomputed for scrapes
    mutable std::mutex mutex_;
    std::map<std::vector<std::string>, Child, LabelValuesLess> children_;
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

class Registry;

/// Keeps a collector registered; destroying (or reset()) unregisters it, waiting for a running scrape to finish.
/// The registry must outlive the handle.
class CollectorHandle {
  public:
    CollectorHandle() = default;
    CollectorHandle(CollectorHandle&& other) noexcept;
    CollectorHandle& operator=(CollectorHandle&& other) noexcept;
    ~CollectorHandle();
    void reset();

  private:
    friend class Registry;
    CollectorHandle(Registry* registry, std::uint64_t id) : registry_(registry), id_(id) {}

    Registry* registry_ = nullptr;
    std::uint64_t id_ = 0;
};

class Registry {
  public:
    Registry() = default;
    Registry(const Registry&) = delete;
    Registry& operator=(const Registry&) = delete;

    /// Registering the same name again with the same type, labels (and buckets) returns the existing family; any
    /// other reuse of a name, an invalid name or a counter not named `*_total` throws std::invalid_argument.
    Family<Counter>& counter(std::string name, std::string help, std::vector<std::string> label_names = {});
    Family<Gauge>& gauge(std::string name, std::string help, std::vector<std::string> label_names = {});
    /// `buckets`: strictly increasing finite upper bounds; a trailing +Inf is accepted and implied anyway.
    Family<Histogram>& histogram(std::string name, std::string help, std::vector<std::string> label_names,
                                 std::vector<double> buckets = kLatencyBuckets);

    /// Appends complete exposition text (HELP/TYPE/samples); called only on scrape, with no registry lock held
    /// except the one that serialises collectors (so it must not add or remove collectors itself).
    using Collector = std::function<void(std::string& out)>;
    [[nodiscard]] CollectorHandle add_collector(Collector collector);

    /// Families sorted by name, then collectors in registration order, into one buffer.
    std::string render() const;
    void render(std::string& out) const;

  private:
    friend class CollectorHandle;
    void remove_collector(std::uint64_t id);
    template <class Metric>
    Family<Metric>& add_family(std::string name, std::string help, std::vector<std::string> label_names,
                               MetricType type, std::vector<double> buckets);

    mutable std::mutex families_mutex_;
    std::map<std::string, std::unique_ptr<FamilyBase>, std::less<>> families_;
    mutable std::mutex collectors_mutex_;
    std::vector<std::pair<std::uint64_t, Collector>> collectors_;
    std::uint64_t next_collector_id_ = 1;
    mutable std::atomic<std::size_t> last_render_size_{0};
};

/// The one process-wide registry.
Registry& registry();

/// Exposition helpers so collectors never hand-format text.
struct Label {
    std::string_view name;
    std::string_view value;
};
/// `# HELP name help` and `# TYPE name type` lines, help escaped.
void append_header(std::string& out, std::string_view name, std::string_view help, MetricType type);
/// `name{a="x"} value` line, label values escaped.
void append_sample(std::string& out, std::string_view name, std::span<const Label> labels, double value);
inline void append_sample(std::string& out, std::string_view name, std::initializer_list<Label> labels, double value) {
    append_sample(out, name, std::span<const Label>(labels.begin(), labels.size()), value);
}
/// A sample value as Prometheus parses it: shortest round-trip decimal, `+Inf`, `-Inf`, `NaN`.
void append_value(std::string& out, double value);
/// Label value escaping: `\` -> `\\`, `"` -> `\"`, newline -> `\n` (no surrounding quotes).
void append_label_value(std::string& out, std::string_view value);

/// Name rules of the exposition format.
bool valid_metric_name(std::string_view name);
bool valid_label_name(std::string_view name);

}  // namespace vigie::metrics
