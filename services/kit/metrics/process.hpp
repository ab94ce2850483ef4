#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kit/metrics/registry.hpp"

/// Standard `process_*` metrics (same names as the Prometheus client libraries) and `build_info`.
namespace vigie::metrics {

/// One reading of the process, in the units the metrics export.
struct ProcessSample {
    double cpu_seconds = 0.0;
    double resident_memory_bytes = 0.0;
    double virtual_memory_bytes = 0.0;
    double open_fds = 0.0;
    double max_fds = 0.0;
    double start_time_seconds = 0.0;  // Unix time
};

/// The fields of /proc/<pid>/stat we use (proc(5) numbering: 14, 15, 22, 23, 24).
struct ProcStat {
    std::uint64_t utime_ticks = 0;
    std::uint64_t stime_ticks = 0;
    std::uint64_t start_ticks = 0;  // since boot
    std::uint64_t vsize_bytes = 0;
    std::uint64_t rss_pages = 0;
};

/// Parses /proc/<pid>/stat text; the command name may itself contain spaces and parentheses.
std::optional<ProcStat> parse_proc_stat(std::string_view content);
/// The `btime` (boot time, Unix seconds) line of /proc/stat.
std::optional<std::uint64_t> parse_boot_time(std::string_view proc_stat_content);

/// Reads /proc/self/stat, /proc/self/fd and RLIMIT_NOFILE; nullopt where /proc is unavailable.
/// `start_time_seconds` is left 0 (it never changes: the collector computes it once).
std::optional<ProcessSample> read_process_sample();
/// HELP/TYPE/sample text for the six process_* metrics.
void append_process_metrics(std::string& out, const ProcessSample& sample);

/// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds,
/// process_max_fds, process_start_time_seconds, read on each scrape.
[[nodiscard]] CollectorHandle register_process_metrics(Registry& registry);

/// Gauge `build_info{service,version,revision} 1`, to join build metadata onto other series.
void register_build_info(Registry& registry, std::string_view service, std::string_view version,
                         std::string_view revision);

}  // namespace vigie::metrics
