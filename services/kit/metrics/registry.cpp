#include "kit/metrics/registry.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

namespace vigie::metrics {
namespace {

// Largest whole number a double holds exactly: below it, integral increments go to the integer atomic.
constexpr double kMaxExactWhole = 9007199254740992.0;  // 2^53

void append_help(std::string& out, std::string_view help) {
    for (const char c : help) {
        if (c == '\\') {
            out.append("\\\\");
        } else if (c == '\n') {
            out.append("\\n");
        } else {
            out.push_back(c);
        }
    }
}

bool valid_name_char(char c, bool first, bool allow_colon) {
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
    return alpha || (!first && c >= '0' && c <= '9');
}

template <class A, class B>
bool less_values(const A& a, const B& b) {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                        [](std::string_view x, std::string_view y) { return x < y; });
}

/// Returns the buckets without a trailing +Inf, or throws if they are not strictly increasing and finite.
std::vector<double> checked_buckets(const std::string& name, std::vector<double> buckets) {
    if (!buckets.empty() && buckets.back() == std::numeric_limits<double>::infinity()) {
        buckets.pop_back();
    }
    for (std::size_t i = 0; i < buckets.size(); ++i) {
        if (!std::isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
            throw std::invalid_argument("histogram " + name + ": buckets must be finite and strictly increasing");
        }
    }
    return buckets;
}

}  // namespace

std::string_view to_string(MetricType type) {
    switch (type) {
        case MetricType::counter:
            return "counter";
        case MetricType::gauge:
            return "gauge";
        case MetricType::histogram:
            return "histogram";
    }
    return "untyped";
}

// ---- Counter, Histogram ----

void Counter::inc(double v) {
    if (v >= 0.0 && v < kMaxExactWhole && v == std::floor(v)) {
        whole_.fetch_add(static_cast<std::uint64_t>(v), std::memory_order_relaxed);
    } else if (v > 0.0) {  // also false for NaN
        fraction_.fetch_add(v, std::memory_order_relaxed);
    }
}

double Counter::value() const {
    return static_cast<double>(whole_.load(std::memory_order_relaxed)) + fraction_.load(std::memory_order_relaxed);
}

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds), counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds.size() + 1)) {}

void Histogram::observe(double v) {
    if (std::isnan(v)) {
        return;
    }
    // Buckets are inclusive upper bounds: the first bound >= v.
    const auto index = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
    counts_[index].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
}

HistogramSnapshot Histogram::snapshot() const {
    HistogramSnapshot snapshot;
    snapshot.bounds.assign(bounds_.begin(), bounds_.end());
    snapshot.cumulative.resize(bounds_.size() + 1);
    std::uint64_t running = 0;
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
        running += counts_[i].load(std::memory_order_relaxed);
        snapshot.cumulative[i] = running;
    }
    // The count is the +Inf bucket by construction, so _count and le="+Inf" always agree.
    snapshot.count = running;
    snapshot.sum = sum_.load(std::memory_order_relaxed);
    return snapshot;
}

// ---- Families ----

FamilyBase::FamilyBase(std::string name, std::string help, MetricType type, std::vector<std::string> label_names)
    : name_(std::move(name)), help_(std::move(help)), type_(type), label_names_(std::move(label_names)) {}

void FamilyBase::check_label_count(std::size_t count) const {
    if (count != label_names_.size()) {
        throw std::invalid_argument("metric " + name_ + ": expected " + std::to_string(label_names_.size()) +
                                    " label values, got " + std::to_string(count));
    }
}

std::string FamilyBase::format_labels(std::span<const std::string_view> values) const {
    std::string labels;
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (i > 0) {
            labels.push_back(',');
        }
        labels.append(label_names_[i]);
        labels.append("=\"");
        append_label_value(labels, values[i]);
        labels.push_back('"');
    }
    return labels;
}

bool LabelValuesLess::operator()(const std::vector<std::string>& a, const std::vector<std::string>& b) const {
    return less_values(a, b);
}
bool LabelValuesLess::operator()(const std::vector<std::string>& a, std::span<const std::string_view> b) const {
    return less_values(a, b);
}
bool LabelValuesLess::operator()(std::span<const std::string_view> a, const std::vector<std::string>& b) const {
    return less_values(a, b);
}

template <class Metric>
Family<Metric>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                       std::vector<double> buckets)
    : FamilyBase(std::move(name), std::move(help),
                 std::is_same_v<Metric, Counter> ? MetricType::counter
                 : std::is_same_v<Metric, Gauge> ? MetricType::gauge
                                                 : MetricType::histogram,
                 std::move(label_names)),
      buckets_(std::move(buckets)) {
    if constexpr (std::is_same_v<Metric, Histogram>) {
        for (const double bound : buckets_) {
            std::string label = "le=\"";
            append_value(label, bound);
            label.push_back('"');
            bucket_labels_.push_back(std::move(label));
        }
        bucket_labels_.emplace_back("le=\"+Inf\"");
    }
}

template <class Metric>
Metric& Family<Metric>::with(std::initializer_list<std::string_view> label_values) {
    return with(std::span<const std::string_view>(label_values.begin(), label_values.size()));
}

template <class Metric>
Metric& Family<Metric>::with(std::span<const std::string_view> label_values) {
    check_label_count(label_values.size());
    const std::lock_guard lock(mutex_);
    if (const auto found = children_.find(label_values); found != children_.end()) {
        return *found->second.metric;
    }
    Child child{format_labels(label_values), nullptr};
    if constexpr (std::is_same_v<Metric, Histogram>) {
        child.metric = std::make_unique<Histogram>(buckets_);
    } else {
        child.metric = std::make_unique<Metric>();
    }
    Metric& metric = *child.metric;
    children_.emplace(std::vector<std::string>(label_values.begin(), label_values.end()), std::move(child));
    return metric;
}

template <class Metric>
void Family<Metric>::render(std::string& out) const {
    const std::lock_guard lock(mutex_);
    if (children_.empty()) {
        return;
    }
    append_header(out, name(), help(), type());
    for (const auto& [values, child] : children_) {
        if constexpr (std::is_same_v<Metric, Histogram>) {
            const HistogramSnapshot snapshot = child.metric->snapshot();
            for (std::size_t i = 0; i < bucket_labels_.size(); ++i) {
                out.append(name());
                out.append("_bucket{");
                if (!child.labels.empty()) {
                    out.append(child.labels);
                    out.push_back(',');
                }
                out.append(bucket_labels_[i]);
                out.append("} ");
                append_value(out, static_cast<double>(snapshot.cumulative[i]));
                out.push_back('\n');
            }
            for (const auto& [suffix, value] : {std::pair<std::string_view, double>{"_sum", snapshot.sum},
                                                {"_count", static_cast<double>(snapshot.count)}}) {
                out.append(name());
                out.append(suffix);
                if (!child.labels.empty()) {
                    out.push_back('{');
                    out.append(child.labels);
                    out.push_back('}');
                }
                out.push_back(' ');
                append_value(out, value);
                out.push_back('\n');
            }
        } else {
            out.append(name());
            if (!child.labels.empty()) {
                out.push_back('{');
                out.append(child.labels);
                out.push_back('}');
            }
            out.push_back(' ');
            append_value(out, child.metric->value());
            out.push_back('\n');
        }
    }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---- Registry ----

CollectorHandle::CollectorHandle(CollectorHandle&& other) noexcept
    : registry_(std::exchange(other.registry_, nullptr)), id_(std::exchange(other.id_, 0)) {}

CollectorHandle& CollectorHandle::operator=(CollectorHandle&& other) noexcept {
    if (this != &other) {
        reset();
        registry_ = std::exchange(other.registry_, nullptr);
        id_ = std::exchange(other.id_, 0);
    }
    return *this;
}

CollectorHandle::~CollectorHandle() {
    reset();
}

void CollectorHandle::reset() {
    if (registry_ != nullptr) {
        registry_->remove_collector(id_);
        registry_ = nullptr;
    }
}

Family<Counter>& Registry::counter(std::string name, std::string help, std::vector<std::string> label_names) {
    if (!name.ends_with("_total")) {
        throw std::invalid_argument("counter " + name + ": counter names end in _total");
    }
    return add_family<Counter>(std::move(name), std::move(help), std::move(label_names), MetricType::counter, {});
}

Family<Gauge>& Registry::gauge(std::string name, std::string help, std::vector<std::string> label_names) {
    return add_family<Gauge>(std::move(name), std::move(help), std::move(label_names), MetricType::gauge, {});
}

Family<Histogram>& Registry::histogram(std::string name, std::string help, std::vector<std::string> label_names,
                                       std::vector<double> buckets) {
    if (std::find(label_names.begin(), label_names.end(), "le") != label_names.end()) {
        throw std::invalid_argument("histogram " + name + ": label name le is reserved");
    }
    buckets = checked_buckets(name, std::move(buckets));
    return add_family<Histogram>(std::move(name), std::move(help), std::move(label_names), MetricType::histogram,
                                 std::move(buckets));
}

template <class Metric>
Family<Metric>& Registry::add_family(std::string name, std::string help, std::vector<std::string> label_names,
                                     MetricType type, std::vector<double> buckets) {
    if (!valid_metric_name(name)) {
        throw std::invalid_argument("invalid metric name: " + name);
    }
    for (std::size_t i = 0; i < label_names.size(); ++i) {
        if (!valid_label_name(label_names[i]) || label_names[i].starts_with("__")) {
            throw std::invalid_argument("metric " + name + ": invalid label name " + label_names[i]);
        }
        if (std::find(label_names.begin(), label_names.begin() + static_cast<std::ptrdiff_t>(i), label_names[i]) !=
            label_names.begin() + static_cast<std::ptrdiff_t>(i)) {
            throw std::invalid_argument("metric " + name + ": duplicate label name " + label_names[i]);
        }
    }
    const std::lock_guard lock(families_mutex_);
    if (const auto found = families_.find(name); found != families_.end()) {
        auto* existing = dynamic_cast<Family<Metric>*>(found->second.get());
        if (existing == nullptr || existing->type() != type || existing->label_names() != label_names ||
            existing->buckets() != buckets) {
            throw std::invalid_argument("metric " + name + " is already registered with another type or labels");
        }
        return *existing;
    }
    auto family = std::make_unique<Family<Metric>>(name, std::move(help), std::move(label_names), std::move(buckets));
    Family<Metric>& result = *family;
    if (result.label_names().empty()) {
        result.with({});  // an unlabelled metric exists from the start, so rate() sees its 0
    }
    families_.emplace(std::move(name), std::move(family));
    return result;
}

CollectorHandle Registry::add_collector(Collector collector) {
    const std::lock_guard lock(collectors_mutex_);
    const std::uint64_t id = next_collector_id_++;
    collectors_.emplace_back(id, std::move(collector));
    return CollectorHandle(this, id);
}

void Registry::remove_collector(std::uint64_t id) {
    const std::lock_guard lock(collectors_mutex_);
    std::erase_if(collectors_, [id](const auto& entry) { return entry.first == id; });
}

std::string Registry::render() const {
    std::string out;
    render(out);
    return out;
}

void Registry::render(std::string& out) const {
    // The previous scrape's size is a good guess for this one: one allocation instead of a doubling series.
    out.reserve(out.size() + last_render_size_.load(std::memory_order_relaxed) + 1024);
    const std::size_t start = out.size();
    {
        const std::lock_guard lock(families_mutex_);
        for (const auto& [name, family] : families_) {
            family->render(out);
        }
    }
    {
        const std::lock_guard lock(collectors_mutex_);
        for (const auto& [id, collector] : collectors_) {
            collector(out);
        }
    }
    last_render_size_.store(out.size() - start, std::memory_order_relaxed);
}

Registry& registry() {
    // Leaked on purpose: metric references cached in statics and threads must stay valid during exit.
    static Registry* instance = new Registry();
    return *instance;
}

// ---- Exposition helpers ----

void append_header(std::string& out, std::string_view name, std::string_view help, MetricType type) {
    out.append("# HELP ");
    out.append(name);
    out.push_back(' ');
    append_help(out, help);
    out.append("\n# TYPE ");
    out.append(name);
    out.push_back(' ');
    out.append(to_string(type));
    out.push_back('\n');
}

void append_sample(std::string& out, std::string_view name, std::span<const Label> labels, double value) {
    out.append(name);
    if (!labels.empty()) {
        out.push_back('{');
        for (std::size_t i = 0; i < labels.size(); ++i) {
            if (i > 0) {
                out.push_back(',');
            }
            out.append(labels[i].name);
            out.append("=\"");
            append_label_value(out, labels[i].value);
            out.push_back('"');
        }
        out.push_back('}');
    }
    out.push_back(' ');
    append_value(out, value);
    out.push_back('\n');
}

void append_value(std::string& out, double value) {
    if (std::isnan(value)) {
        out.append("NaN");
    } else if (std::isinf(value)) {
        out.append(value > 0 ? "+Inf" : "-Inf");
    } else {
        char buffer[32];
        const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
        out.append(buffer, result.ptr);
    }
}

void append_label_value(std::string& out, std::string_view value) {
    for (const char c : value) {
        if (c == '\\') {
            out.append("\\\\");
        } else if (c == '"') {
            out.append("\\\"");
        } else if (c == '\n') {
            out.append("\\n");
        } else {
            out.push_back(c);
        }
    }
}

bool valid_metric_name(std::string_view name) {
    if (name.empty()) {
        return false;
    }
    for (std::size_t i = 0; i < name.size(); ++i) {
        if (!valid_name_char(name[i], i == 0, true)) {
            return false;
        }
    }
    return true;
}

bool valid_label_name(std::string_view name) {
    if (name.empty()) {
        return false;
    }
    for (std::size_t i = 0; i < name.size(); ++i) {
        if (!valid_name_char(name[i], i == 0, false)) {
            return false;
        }
    }
    return true;
}

}  // namespace vigie::metrics
