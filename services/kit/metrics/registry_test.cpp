#include "kit/metrics/registry.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace vigie::metrics {
namespace {

TEST(MetricsRender, ExactTextForEachMetricType) {
    Registry registry;
    auto& requests = registry.counter("http_server_requests_total", "Requests served.", {"method", "status_class"});
    registry.gauge("db_pool_in_use", "Connections in use.").with().set(3);
    auto& latency =
        registry.histogram("http_server_request_duration_seconds", "Request latency.", {"route"}, {0.1, 1.0});
    requests.with({"GET", "2xx"}).inc();
    requests.with({"GET", "2xx"}).inc(2);
    requests.with({"POST", "5xx"}).inc();
    latency.with({"/users/{id}"}).observe(0.05);
    latency.with({"/users/{id}"}).observe(0.5);

    EXPECT_EQ(registry.render(),
              "# HELP db_pool_in_use Connections in use.\n"
              "# TYPE db_pool_in_use gauge\n"
              "db_pool_in_use 3\n"
              "# HELP http_server_request_duration_seconds Request latency.\n"
              "# TYPE http_server_request_duration_seconds histogram\n"
              "http_server_request_duration_seconds_bucket{route=\"/users/{id}\",le=\"0.1\"} 1\n"
              "http_server_request_duration_seconds_bucket{route=\"/users/{id}\",le=\"1\"} 2\n"
              "http_server_request_duration_seconds_bucket{route=\"/users/{id}\",le=\"+Inf\"} 2\n"
              "http_server_request_duration_seconds_sum{route=\"/users/{id}\"} 0.55\n"
              "http_server_request_duration_seconds_count{route=\"/users/{id}\"} 2\n"
              "# HELP http_server_requests_total Requests served.\n"
              "# TYPE http_server_requests_total counter\n"
              "http_server_requests_total{method=\"GET\",status_class=\"2xx\"} 3\n"
              "http_server_requests_total{method=\"POST\",status_class=\"5xx\"} 1\n");
}

TEST(MetricsRender, UnlabelledMetricsExistFromRegistrationLabelledOnesOnFirstUse) {
    Registry registry;
    registry.counter("restarts_total", "Restarts.");
    registry.histogram("wait_seconds", "Wait.", {}, {1.0});
    registry.counter("errors_total", "Errors.", {"kind"});
    EXPECT_EQ(registry.render(),
              "# HELP restarts_total Restarts.\n"
              "# TYPE restarts_total counter\n"
              "restarts_total 0\n"
              "# HELP wait_seconds Wait.\n"
              "# TYPE wait_seconds histogram\n"
              "wait_seconds_bucket{le=\"1\"} 0\n"
              "wait_seconds_bucket{le=\"+Inf\"} 0\n"
              "wait_seconds_sum 0\n"
              "wait_seconds_count 0\n");
}

TEST(MetricsRender, EscapesLabelValuesAndHelp) {
    Registry registry;
    registry.counter("odd_total", "Help with \\ and\nnewline \"quotes\" kept.", {"path"})
        .with({"C:\\dir\\\"x\"\nnext"})
        .inc();
    EXPECT_EQ(registry.render(),
              "# HELP odd_total Help with \\\\ and\\nnewline \"quotes\" kept.\n"
              "# TYPE odd_total counter\n"
              "odd_total{path=\"C:\\\\dir\\\\\\\"x\\\"\\nnext\"} 1\n");
}

TEST(MetricsRender, ValuesUseShortestRoundTripAndPrometheusSpecials) {
    std::string out;
    for (const double v : {0.0, 1.0, 0.1, 1e-7, 123456789.0, 2.5e21, -3.0}) {
        append_value(out, v);
        out.push_back(' ');
    }
    append_value(out, std::numeric_limits<double>::infinity());
    out.push_back(' ');
    append_value(out, -std::numeric_limits<double>::infinity());
    out.push_back(' ');
    append_value(out, std::numeric_limits<double>::quiet_NaN());
    EXPECT_EQ(out, "0 1 0.1 1e-07 123456789 2.5e+21 -3 +Inf -Inf NaN");
}

TEST(MetricsRender, HelpersFormatCollectorText) {
    std::string out;
    append_header(out, "queue_depth", "Items\nqueued.", MetricType::gauge);
    append_sample(out, "queue_depth", {{"queue", "a\"b"}, {"shard", "1"}}, 7);
    append_sample(out, "queue_depth", {}, 0.5);
    EXPECT_EQ(out,
              "# HELP queue_depth Items\\nqueued.\n"
              "# TYPE queue_depth gauge\n"
              "queue_depth{queue=\"a\\\"b\",shard=\"1\"} 7\n"
              "queue_depth 0.5\n");
}

TEST(MetricsHistogram, BucketsAreInclusiveAndCumulative) {
    const std::vector<double> bounds = {0.1, 1.0, 10.0};
    Histogram histogram(bounds);
    for (const double v : {0.05, 0.1, 0.5, 5.0, 50.0, -1.0}) {
        histogram.observe(v);
    }
    histogram.observe(std::numeric_limits<double>::quiet_NaN());  // ignored
    const HistogramSnapshot snapshot = histogram.snapshot();
    EXPECT_EQ(snapshot.cumulative, (std::vector<std::uint64_t>{3, 4, 5, 6}));
    EXPECT_EQ(snapshot.count, 6u);
    EXPECT_DOUBLE_EQ(snapshot.sum, 54.65);
    EXPECT_EQ(snapshot.bounds, bounds);
}

TEST(MetricsCounter, IgnoresNegativeAndNaNAndKeepsFractions) {
    Counter counter;
    counter.inc();
    counter.inc(0.25);
    counter.inc(-5);
    counter.inc(std::numeric_limits<double>::quiet_NaN());
    counter.inc(2);
    EXPECT_DOUBLE_EQ(counter.value(), 3.25);
}

TEST(MetricsGauge, SetAddIncDec) {
    Gauge gauge;
    gauge.set(10);
    gauge.add(-2.5);
    gauge.inc();
    gauge.dec();
    gauge.dec();
    EXPECT_DOUBLE_EQ(gauge.value(), 6.5);
}

TEST(MetricsFamily, SameLabelValuesGiveTheSameChild) {
    Registry registry;
    auto& family = registry.counter("hits_total", "Hits.", {"route"});
    Counter& a = family.with({"/a"});
    EXPECT_EQ(&a, &family.with({"/a"}));
    EXPECT_NE(&a, &family.with({"/b"}));
    EXPECT_THROW(family.with({}), std::invalid_argument);
    EXPECT_THROW(family.with({"/a", "extra"}), std::invalid_argument);
}

TEST(MetricsRegistry, ReRegisteringReturnsTheSameFamilyAndConflictsThrow) {
    Registry registry;
    auto& counter = registry.counter("jobs_total", "Jobs.", {"queue"});
    EXPECT_EQ(&counter, &registry.counter("jobs_total", "Other help is fine.", {"queue"}));
    EXPECT_THROW(registry.counter("jobs_total", "Jobs.", {"other"}), std::invalid_argument);
    EXPECT_THROW(registry.counter("jobs_total", "Jobs.", {}), std::invalid_argument);
    EXPECT_THROW(registry.gauge("jobs_total", "Jobs."), std::invalid_argument);

    auto& histogram = registry.histogram("latency_seconds", "Latency.", {}, {0.5, 1.0});
    EXPECT_EQ(&histogram, &registry.histogram("latency_seconds", "Latency.", {}, {0.5, 1.0}));
    EXPECT_EQ(&histogram, &registry.histogram("latency_seconds", "Latency.", {},
                                              {0.5, 1.0, std::numeric_limits<double>::infinity()}));
    EXPECT_THROW(registry.histogram("latency_seconds", "Latency.", {}, {0.5, 2.0}), std::invalid_argument);
}

TEST(MetricsRegistry, RejectsInvalidDefinitions) {
    Registry registry;
    EXPECT_THROW(registry.counter("requests", "No _total suffix."), std::invalid_argument);
    EXPECT_THROW(registry.gauge("9lives", "Bad name."), std::invalid_argument);
    EXPECT_THROW(registry.gauge("has-dash", "Bad name."), std::invalid_argument);
    EXPECT_THROW(registry.gauge("ok_name", "Bad label.", {"bad-label"}), std::invalid_argument);
    EXPECT_THROW(registry.gauge("ok_name", "Reserved label.", {"__name"}), std::invalid_argument);
    EXPECT_THROW(registry.gauge("ok_name", "Duplicate label.", {"a", "a"}), std::invalid_argument);
    EXPECT_THROW(registry.histogram("h_seconds", "le is reserved.", {"le"}), std::invalid_argument);
    EXPECT_THROW(registry.histogram("h_seconds", "Not increasing.", {}, {1.0, 1.0}), std::invalid_argument);
    EXPECT_THROW(registry.histogram("h_seconds", "NaN bound.", {}, {std::nan("")}), std::invalid_argument);
    EXPECT_NO_THROW(registry.gauge("namespace:ok_name", "Colons are allowed in names.", {"_a1"}));
    EXPECT_TRUE(valid_metric_name("a:b_c1"));
    EXPECT_FALSE(valid_label_name("a:b"));
}

TEST(MetricsRegistry, CollectorRunsOnScrapeAndHandleUnregisters) {
    Registry registry;
    int calls = 0;
    auto collector = [&calls](std::string& out) {
        ++calls;
        append_header(out, "queue_depth", "Depth.", MetricType::gauge);
        append_sample(out, "queue_depth", {}, 4);
    };
    {
        CollectorHandle handle = registry.add_collector(collector);
        EXPECT_EQ(calls, 0) << "collectors run only on scrape";
        CollectorHandle moved = std::move(handle);
        handle.reset();  // the moved-from handle no longer owns the registration
        EXPECT_NE(registry.render().find("queue_depth 4\n"), std::string::npos);
        EXPECT_EQ(calls, 1);
    }
    EXPECT_EQ(registry.render(), "");
    EXPECT_EQ(calls, 1);

    CollectorHandle first = registry.add_collector(collector);
    CollectorHandle second = registry.add_collector([](std::string& out) { out.append("# second\n"); });
    first = std::move(second);  // assigning releases the first registration
    EXPECT_EQ(registry.render(), "# second\n");
}

TEST(MetricsConcurrency, ThreadsIncrementingLoseNothing) {
    Registry registry;
    auto& counter = registry.counter("ops_total", "Ops.", {"worker"});
    auto& histogram = registry.histogram("op_seconds", "Op time.", {}, {0.5});
    auto& gauge = registry.gauge("in_flight", "In flight.");
    Counter& shared = counter.with({"shared"});
    constexpr int kThreads = 4;
    constexpr int kIterations = 100'000;
    std::atomic<bool> done{false};
    std::thread scraper([&] {
        while (!done.load()) {
            const std::string text = registry.render();  // concurrent scrapes see a consistent-enough state
            ASSERT_NE(text.find("# TYPE ops_total counter"), std::string::npos);
        }
    });
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            Counter& mine = counter.with({std::to_string(t)});  // children created while others scrape
            Histogram& child = histogram.with();
            Gauge& level = gauge.with();
            for (int i = 0; i < kIterations; ++i) {
                shared.inc();
                mine.inc(0.5);
                child.observe(i % 2 == 0 ? 0.25 : 1.0);
                level.inc();
                level.dec();
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    done = true;
    scraper.join();
    EXPECT_EQ(shared.value(), kThreads * kIterations);
    EXPECT_EQ(counter.with({"0"}).value(), kIterations * 0.5);
    const HistogramSnapshot snapshot = histogram.with().snapshot();
    EXPECT_EQ(snapshot.count, static_cast<std::uint64_t>(kThreads * kIterations));
    EXPECT_EQ(snapshot.cumulative[0], static_cast<std::uint64_t>(kThreads * kIterations / 2));
    EXPECT_DOUBLE_EQ(snapshot.sum, kThreads * kIterations / 2 * 1.25);
    EXPECT_EQ(gauge.with().value(), 0.0);
}

TEST(MetricsRegistry, GlobalRegistryIsOneInstance) {
    EXPECT_EQ(&registry(), &registry());
}

}  // namespace
}  // namespace vigie::metrics
