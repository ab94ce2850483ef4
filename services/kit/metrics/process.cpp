#include "kit/metrics/process.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <limits>

namespace vigie::metrics {
namespace {

/// Whole small file via read(2): /proc files report size 0, and iostreams would allocate more than the scrape.
std::optional<std::string> read_small_file(const char* path) {
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return std::nullopt;
    }
    std::string content;
    std::array<char, 4096> buffer;
    for (;;) {
        const ssize_t n = ::read(fd, buffer.data(), buffer.size());
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            ::close(fd);
            if (n < 0) {
                return std::nullopt;
            }
            return content;
        }
        content.append(buffer.data(), static_cast<std::size_t>(n));
    }
}

bool parse_unsigned(std::string_view token, std::uint64_t& value) {
    const auto result = std::from_chars(token.data(), token.data() + token.size(), value);
    return result.ec == std::errc() && result.ptr == token.data() + token.size();
}

std::optional<double> count_open_fds() {
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) {
        return std::nullopt;
    }
    const int own_fd = ::dirfd(dir);  // not one of the process's own files: leave it out
    double count = 0;
    while (const dirent* entry = ::readdir(dir)) {
        std::uint64_t fd = 0;
        if (parse_unsigned(entry->d_name, fd) && static_cast<int>(fd) != own_fd) {
            ++count;
        }
    }
    ::closedir(dir);
    return count;
}

}  // namespace

std::optional<ProcStat> parse_proc_stat(std::string_view content) {
    // The command name is in parentheses and may contain anything, ')' included: the fields start after the last.
    const auto close = content.rfind(')');
    if (close == std::string_view::npos) {
        return std::nullopt;
    }
    std::string_view rest = content.substr(close + 1);
    // Field 3 (state) is the first token after ')'; keep tokens up to field 24 (rss).
    constexpr std::size_t kFirstField = 3;
    constexpr std::size_t kLastField = 24;
    std::array<std::string_view, kLastField - kFirstField + 1> tokens;
    std::size_t count = 0;
    while (count < tokens.size()) {
        const auto start = rest.find_first_not_of(" \n");
        if (start == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(start);
        const auto end = rest.find_first_of(" \n");
        tokens[count++] = rest.substr(0, end);
        rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
    }
    if (count < tokens.size()) {
        return std::nullopt;
    }
    const auto field = [&](std::size_t number) { return tokens[number - kFirstField]; };
    ProcStat stat;
    if (!parse_unsigned(field(14), stat.utime_ticks) || !parse_unsigned(field(15), stat.stime_ticks) ||
        !parse_unsigned(field(22), stat.start_ticks) || !parse_unsigned(field(23), stat.vsize_bytes) ||
        !parse_unsigned(field(24), stat.rss_pages)) {
        return std::nullopt;
    }
    return stat;
}

std::optional<std::uint64_t> parse_boot_time(std::string_view proc_stat_content) {
    constexpr std::string_view kKey = "btime ";
    std::size_t pos = 0;
    while (pos < proc_stat_content.size()) {
        const auto end = proc_stat_content.find('\n', pos);
        const std::string_view line = proc_stat_content.substr(pos, end == std::string_view::npos ? end : end - pos);
        if (line.starts_with(kKey)) {
            std::uint64_t value = 0;
            if (parse_unsigned(line.substr(kKey.size()), value)) {
                return value;
            }
            return std::nullopt;
        }
        if (end == std::string_view::npos) {
            break;
        }
        pos = end + 1;
    }
    return std::nullopt;
}

std::optional<ProcessSample> read_process_sample() {
    const auto content = read_small_file("/proc/self/stat");
    if (!content) {
        return std::nullopt;
    }
    const auto stat = parse_proc_stat(*content);
    const auto open_fds = count_open_fds();
    if (!stat || !open_fds) {
        return std::nullopt;
    }
    const auto ticks_per_second = static_cast<double>(::sysconf(_SC_CLK_TCK));
    const auto page_size = static_cast<double>(::sysconf(_SC_PAGESIZE));
    ProcessSample sample;
    sample.cpu_seconds = static_cast<double>(stat->utime_ticks + stat->stime_ticks) / ticks_per_second;
    sample.resident_memory_bytes = static_cast<double>(stat->rss_pages) * page_size;
    sample.virtual_memory_bytes = static_cast<double>(stat->vsize_bytes);
    sample.open_fds = *open_fds;
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        sample.max_fds = limit.rlim_cur == RLIM_INFINITY ? std::numeric_limits<double>::infinity()
                                                         : static_cast<double>(limit.rlim_cur);
    }
    return sample;
}

void append_process_metrics(std::string& out, const ProcessSample& sample) {
    const struct {
        std::string_view name;
        std::string_view help;
        MetricType type;
        double value;
    } metrics[] = {
        {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", MetricType::counter,
         sample.cpu_seconds},
        {"process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::gauge,
         sample.resident_memory_bytes},
        {"process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::gauge,
         sample.virtual_memory_bytes},
        {"process_open_fds", "Number of open file descriptors.", MetricType::gauge, sample.open_fds},
        {"process_max_fds", "Maximum number of open file descriptors.", MetricType::gauge, sample.max_fds},
        {"process_start_time_seconds", "Start time of the process since unix epoch in seconds.", MetricType::gauge,
         sample.start_time_seconds},
    };
    for (const auto& metric : metrics) {
        append_header(out, metric.name, metric.help, metric.type);
        append_sample(out, metric.name, {}, metric.value);
    }
}

CollectorHandle register_process_metrics(Registry& registry) {
    // The start time never changes: compute it once rather than reading /proc/stat on every scrape.
    double start_time_seconds = 0.0;
    const auto self = read_small_file("/proc/self/stat");
    const auto system = read_small_file("/proc/stat");
    if (self && system) {
        const auto stat = parse_proc_stat(*self);
        const auto boot_time = parse_boot_time(*system);
        if (stat && boot_time) {
            start_time_seconds = static_cast<double>(*boot_time) +
                                 static_cast<double>(stat->start_ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
        }
    }
    return registry.add_collector([start_time_seconds](std::string& out) {
        if (auto sample = read_process_sample()) {
            sample->start_time_seconds = start_time_seconds;
            append_process_metrics(out, *sample);
        }
    });
}

void register_build_info(Registry& registry, std::string_view service, std::string_view version,
                         std::string_view revision) {
    registry.gauge("build_info", "Build metadata; the value is always 1.", {"service", "version", "revision"})
        .with({service, version, revision})
        .set(1.0);
}

}  // namespace vigie::metrics
