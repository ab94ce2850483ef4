#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "kit/metrics/registry.hpp"

namespace vigie::trace {
class Tracer;
}  // namespace vigie::trace

namespace vigie::db::detail {

/// Shared by a pool and its connections; immutable after construction.
struct Instruments {
    std::string pool_name;
    trace::Tracer* tracer = nullptr;
    std::chrono::milliseconds query_timeout{2000};
    /// Server-side statement_timeout set on each new connection (0: leave the server's).
    std::chrono::milliseconds statement_timeout{0};
    metrics::Family<metrics::Histogram>* query_duration = nullptr;
};

/// The db_query_duration_seconds family, registered once in the process registry.
metrics::Family<metrics::Histogram>& query_duration_family();

}  // namespace vigie::db::detail
