#include "kit/metrics/process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace vigie::metrics {
namespace {

/// The value of the unlabelled sample `name` in exposition text, or NaN if absent.
double sample_value(const std::string& text, const std::string& name) {
    const auto pos = text.find("\n" + name + " ");
    if (pos == std::string::npos) {
        return std::nan("");
    }
    return std::strtod(text.c_str() + pos + name.size() + 2, nullptr);
}

TEST(ProcessStat, ParsesFieldsAfterAnAwkwardCommandName) {
    // proc(5) fields 1..24 then more; the name "(a) (b c)" contains spaces and parentheses.
    const std::string content =
        "4242 ((a) (b c)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 "
        "150 30 0 0 20 0 4 0 987654 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0\n";
    const auto stat = parse_proc_stat(content);
    ASSERT_TRUE(stat.has_value());
    EXPECT_EQ(stat->utime_ticks, 150u);
    EXPECT_EQ(stat->stime_ticks, 30u);
    EXPECT_EQ(stat->start_ticks, 987654u);
    EXPECT_EQ(stat->vsize_bytes, 123456789u);
    EXPECT_EQ(stat->rss_pages, 2048u);
}

TEST(ProcessStat, RejectsTruncatedOrMalformedContent) {
    EXPECT_FALSE(parse_proc_stat("").has_value());
    EXPECT_FALSE(parse_proc_stat("1 (x) S 1 2 3").has_value());
    EXPECT_FALSE(parse_proc_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 30 0 0 20 0 4 0 9 9 9\n").has_value());
}

TEST(ProcessStat, FindsBootTime) {
    EXPECT_EQ(parse_boot_time("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n"), 1700000000u);
    EXPECT_EQ(parse_boot_time("cpu 1\nbtime 42"), 42u);
    EXPECT_FALSE(parse_boot_time("cpu 1\nbtimex 5\n").has_value());
}

TEST(ProcessMetrics, ReadingIsPlausibleAndTracksOpenFiles) {
    const auto before = read_process_sample();
    ASSERT_TRUE(before.has_value());
    EXPECT_GT(before->resident_memory_bytes, 1 << 20);
    EXPECT_LT(before->resident_memory_bytes, 64.0 * (1 << 30));
    EXPECT_GE(before->virtual_memory_bytes, before->resident_memory_bytes);
    EXPECT_GE(before->open_fds, 3);
    EXPECT_GE(before->max_fds, before->open_fds);
    EXPECT_GE(before->cpu_seconds, 0);

    const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    const auto during = read_process_sample();
    ::close(fd);
    ASSERT_TRUE(during.has_value());
    EXPECT_EQ(during->open_fds, before->open_fds + 1);
}

TEST(ProcessMetrics, CpuSecondsGrowWhenBurningCpu) {
    const double start = read_process_sample().value().cpu_seconds;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    volatile std::uint64_t sink = 0;
    while (read_process_sample().value().cpu_seconds <= start) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "CPU time never moved";
        for (int i = 0; i < 1'000'000; ++i) {
            sink = sink + static_cast<std::uint64_t>(i);
        }
    }
}

TEST(ProcessMetrics, CollectorExportsTheSixMetricsUntilReleased) {
    Registry registry;
    std::string text;
    {
        CollectorHandle handle = register_process_metrics(registry);
        text = "\n" + registry.render();
    }
    for (const char* name :
         {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
          "process_open_fds", "process_max_fds", "process_start_time_seconds"}) {
        EXPECT_FALSE(std::isnan(sample_value(text, name))) << name << " missing from:\n" << text;
    }
    EXPECT_NE(text.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos);
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    const double started = sample_value(text, "process_start_time_seconds");
    EXPECT_LE(started, now + 2);
    EXPECT_GT(started, now - 24 * 3600) << "this test process started recently";
    EXPECT_EQ(registry.render(), "") << "destroying the handle unregisters the collector";
}

TEST(ProcessMetrics, BuildInfoIsAOneValuedGauge) {
    Registry registry;
    register_build_info(registry, "user", "1.2.3", "0123abcd");
    register_build_info(registry, "user", "1.2.3", "0123abcd");  // idempotent
    EXPECT_EQ(registry.render(),
              "# HELP build_info Build metadata; the value is always 1.\n"
              "# TYPE build_info gauge\n"
              "build_info{service=\"user\",version=\"1.2.3\",revision=\"0123abcd\"} 1\n");
}

/// Runs `promtool check metrics` on `text`; returns its exit status and output.
std::pair<int, std::string> promtool_check(const std::string& text) {
    const auto dir = std::filesystem::temp_directory_path();
    const auto input = dir / ("vigie_metrics_" + std::to_string(::getpid()) + ".prom");
    const auto output = dir / ("vigie_metrics_" + std::to_string(::getpid()) + ".out");
    std::ofstream(input) << text;
    const std::string command =
        "/usr/bin/promtool check metrics < " + input.string() + " > " + output.string() + " 2>&1";
    const int status = std::system(command.c_str());
    std::ifstream stream(output);
    std::string message((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
    std::filesystem::remove(input);
    std::filesystem::remove(output);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, message};
}

TEST(PromtoolIntegration, RenderedRegistryPassesPromtoolCheckMetrics) {
    if (!std::filesystem::exists("/usr/bin/promtool")) {
        GTEST_SKIP() << "/usr/bin/promtool not installed (Debian package prometheus)";
    }
    Registry registry;
    auto& requests = registry.counter("http_server_requests_total", "Requests served.",
                                      {"service", "route", "method", "status_class"});
    requests.with({"user", "/api/v1/users/{id}", "GET", "2xx"}).inc(41);
    requests.with({"user", "weird \"route\"\\\nline", "POST", "5xx"}).inc();
    auto& latency = registry.histogram("http_server_request_duration_seconds", "Request latency.",
                                       {"service", "route", "method", "status_class"});
    for (const double v : {0.0005, 0.003, 0.2, 12.0}) {
        latency.with({"user", "/api/v1/users/{id}", "GET", "2xx"}).observe(v);
    }
    registry.gauge("db_pool_connections_in_use", "Connections in use.", {"pool"}).with({"users"}).set(2);
    register_build_info(registry, "user", "0.1.0", "abc123");
    CollectorHandle process = register_process_metrics(registry);

    const auto [status, message] = promtool_check(registry.render());
    EXPECT_EQ(status, 0) << message;
    EXPECT_EQ(message, "");

    // The check can fail: a counter without _total (only possible by hand-writing text) is reported.
    std::string bad;
    append_header(bad, "requests", "Hand-written.", MetricType::counter);
    append_sample(bad, "requests", {}, 1);
    EXPECT_NE(promtool_check(bad).first, 0);
}

}  // namespace
}  // namespace vigie::metrics
