#include "kit/log/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <mutex>
#include <utility>

namespace vigie::log {
namespace {

/// The logger: the one global besides the metrics registry.
struct State {
    std::atomic<int> min_level{static_cast<int>(Level::info)};
    std::string service = "vigie";
    std::mutex write_mutex;  // guards the sink and the write itself
    std::function<void(std::string_view)> sink;
};

State& state() {
    // Leaked on purpose: threads may still log while static destructors run.
    static State* instance = new State();
    return *instance;
}

void write_all_stdout(std::string_view line) {
    const char* data = line.data();
    std::size_t left = line.size();
    while (left > 0) {
        const ssize_t n = ::write(STDOUT_FILENO, data, left);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;  // stdout gone (EPIPE, closed): nowhere left to report it
        }
        data += n;
        left -= static_cast<std::size_t>(n);
    }
}

void append_two_digits(std::string& out, unsigned value) {
    out.push_back(static_cast<char>('0' + value / 10));
    out.push_back(static_cast<char>('0' + value % 10));
}

/// Gregorian date from days since 1970-01-01 (H. Hinnant's civil_from_days): no locale, no tz lookup, no lock.
void civil_from_days(std::int64_t days, std::int64_t& year, unsigned& month, unsigned& day) {
    days += 719468;
    const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    const auto doe = static_cast<unsigned>(days - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    day = doy - (153 * mp + 2) / 5 + 1;
    month = mp < 10 ? mp + 3 : mp - 9;
    year = static_cast<std::int64_t>(yoe) + era * 400 + (month <= 2 ? 1 : 0);
}

/// Decodes the UTF-8 sequence starting at s[i] (RFC 3629 table). Returns its length and whether it is valid; an
/// invalid one spans its "maximal subpart" (Unicode 15, 3.9), which becomes a single U+FFFD, as browsers do.
struct Utf8Sequence {
    std::size_t length;
    bool valid;
};

Utf8Sequence decode_utf8(std::string_view s, std::size_t i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    std::size_t needed = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        needed = 1;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        needed = 2;
        lo = b0 == 0xE0 ? 0xA0 : 0x80;  // no overlong forms
        hi = b0 == 0xED ? 0x9F : 0xBF;  // no UTF-16 surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        needed = 3;
        lo = b0 == 0xF0 ? 0x90 : 0x80;
        hi = b0 == 0xF4 ? 0x8F : 0xBF;  // nothing above U+10FFFF
    } else {
        return {1, false};  // stray continuation byte or a byte that never starts a sequence
    }
    std::size_t length = 1;
    while (length <= needed && i + length < s.size()) {
        const auto b = static_cast<unsigned char>(s[i + length]);
        if (b < lo || b > hi) {
            break;
        }
        ++length;
        lo = 0x80;
        hi = 0xBF;
    }
    return {length, length == needed + 1};
}

void append_value(std::string& out, const Value& value) {
    std::visit(
        [&out](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::string_view>) {
                append_json_string(out, v);
            } else if constexpr (std::is_same_v<T, bool>) {
                out.append(v ? "true" : "false");
            } else if constexpr (std::is_same_v<T, double>) {
                append_json_number(out, v);
            } else {
                char buffer[24];
                const auto result = std::to_chars(buffer, buffer + sizeof buffer, v);
                out.append(buffer, result.ptr);
            }
        },
        value);
}

}  // namespace

std::optional<Level> parse_level(std::string_view text) {
    if (text == "debug") {
        return Level::debug;
    }
    if (text == "info") {
        return Level::info;
    }
    if (text == "warn") {
        return Level::warn;
    }
    if (text == "error") {
        return Level::error;
    }
    return std::nullopt;
}

std::string_view to_string(Level level) {
    switch (level) {
        case Level::debug:
            return "debug";
        case Level::info:
            return "info";
        case Level::warn:
            return "warn";
        case Level::error:
            return "error";
    }
    return "info";
}

void init(std::string service_name, Level min_level) {
    State& s = state();
    const std::lock_guard lock(s.write_mutex);
    s.service = std::move(service_name);
    s.min_level.store(static_cast<int>(min_level), std::memory_order_relaxed);
}

void set_min_level(Level level) {
    state().min_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

Level min_level() {
    return static_cast<Level>(state().min_level.load(std::memory_order_relaxed));
}

bool enabled(Level level) {
    return static_cast<int>(level) >= state().min_level.load(std::memory_order_relaxed);
}

void write(Level level, std::string_view message, std::initializer_list<Field> fields) {
    if (!enabled(level)) {
        return;
    }
    State& s = state();
    // Format outside the lock into a per-thread buffer: no allocation once it has grown, short critical section.
    thread_local std::string buffer;
    buffer.clear();
    append_line(buffer, std::chrono::system_clock::now(), level, s.service, message,
                std::span<const Field>(fields.begin(), fields.size()));
    const std::lock_guard lock(s.write_mutex);
    if (s.sink) {
        s.sink(buffer);
    } else {
        write_all_stdout(buffer);
    }
}

void set_sink_for_test(std::function<void(std::string_view line)> sink) {
    State& s = state();
    const std::lock_guard lock(s.write_mutex);
    s.sink = std::move(sink);
}

void append_line(std::string& out, std::chrono::system_clock::time_point at, Level level, std::string_view service,
                 std::string_view message, std::span<const Field> fields) {
    out.append("{\"@timestamp\":\"");
    append_timestamp(out, at);
    out.append("\",\"log.level\":\"");
    out.append(to_string(level));
    out.append("\",\"service.name\":");
    append_json_string(out, service);
    out.append(",\"message\":");
    append_json_string(out, message);
    for (const Field& field : fields) {
        out.push_back(',');
        append_json_string(out, field.key);
        out.push_back(':');
        append_value(out, field.value);
    }
    out.append("}\n");
}

std::string format_line(std::chrono::system_clock::time_point at, Level level, std::string_view service,
                        std::string_view message, std::span<const Field> fields) {
    std::string out;
    out.reserve(128 + message.size());
    append_line(out, at, level, service, message, fields);
    return out;
}

void append_json_string(std::string& out, std::string_view text) {
    static constexpr char kHex[] = "0123456789abcdef";
    out.push_back('"');
    std::size_t run_start = 0;
    std::size_t i = 0;
    while (i < text.size()) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            ++i;  // the common case: copied later as part of a run
            continue;
        }
        out.append(text.data() + run_start, i - run_start);
        if (c >= 0x80) {
            const Utf8Sequence sequence = decode_utf8(text, i);
            if (sequence.valid) {
                out.append(text.data() + i, sequence.length);
            } else {
                out.append("\xEF\xBF\xBD");  // U+FFFD REPLACEMENT CHARACTER
            }
            i += sequence.length;
            run_start = i;
            continue;
        }
        switch (c) {
            case '"':
                out.append("\\\"");
                break;
            case '\\':
                out.append("\\\\");
                break;
            case '\n':
                out.append("\\n");
                break;
            case '\r':
                out.append("\\r");
                break;
            case '\t':
                out.append("\\t");
                break;
            case '\b':
                out.append("\\b");
                break;
            case '\f':
                out.append("\\f");
                break;
            default: {
                const char escaped[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
                out.append(escaped, sizeof escaped);
            }
        }
        ++i;
        run_start = i;
    }
    out.append(text.data() + run_start, text.size() - run_start);
    out.push_back('"');
}

void append_json_number(std::string& out, double value) {
    if (!std::isfinite(value)) {
        out.append("null");
        return;
    }
    char buffer[32];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
    out.append(buffer, result.ptr);
}

void append_timestamp(std::string& out, std::chrono::system_clock::time_point at) {
    using namespace std::chrono;
    const auto ms_since_epoch = duration_cast<milliseconds>(at.time_since_epoch()).count();
    // Floor division so instants before 1970 still get a valid (if unlikely) date.
    std::int64_t days = ms_since_epoch / 86'400'000;
    std::int64_t ms_of_day = ms_since_epoch % 86'400'000;
    if (ms_of_day < 0) {
        ms_of_day += 86'400'000;
        --days;
    }
    std::int64_t year = 0;
    unsigned month = 0;
    unsigned day = 0;
    civil_from_days(days, year, month, day);
    char year_buffer[24];
    const auto year_end = std::to_chars(year_buffer, year_buffer + sizeof year_buffer, year).ptr;
    for (auto digits = year_end - year_buffer; digits < 4; ++digits) {
        out.push_back('0');
    }
    out.append(year_buffer, year_end);
    out.push_back('-');
    append_two_digits(out, month);
    out.push_back('-');
    append_two_digits(out, day);
    out.push_back('T');
    const auto seconds_of_day = static_cast<unsigned>(ms_of_day / 1000);
    append_two_digits(out, seconds_of_day / 3600);
    out.push_back(':');
    append_two_digits(out, seconds_of_day / 60 % 60);
    out.push_back(':');
    append_two_digits(out, seconds_of_day % 60);
    out.push_back('.');
    const auto millis = static_cast<unsigned>(ms_of_day % 1000);
    out.push_back(static_cast<char>('0' + millis / 100));
    append_two_digits(out, millis % 100);
    out.push_back('Z');
}

}  // namespace vigie::log
