#pragma once

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without including it

// Asio and the standard library
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "kit/db/connection.hpp"
#include "kit/db/result.hpp"

namespace vigie::db {

struct PoolOptions {
    std::string conninfo;           ///< libpq connection string or URI
    std::string name;               ///< `pool` metric label, e.g. "users"
    std::size_t size = 8;           ///< connections at most (opened on demand)
    std::size_t max_waiters = 256;  ///< acquirers allowed to queue when all connections are busy
    std::chrono::milliseconds acquire_timeout{1000};
    std::chrono::milliseconds query_timeout{2000};
    std::chrono::milliseconds connect_timeout{2000};
    /// After a failed connection attempt the pool is unhealthy: acquire() fails at once with `unavailable` (unless
    /// an idle connection is left) while a background probe retries on this rhythm, so the pool heals by itself,
    /// with or without traffic.
    std::chrono::milliseconds reconnect_interval{250};
};

class Pool;

namespace detail {
class PoolCore;
}  // namespace detail

/// A borrowed connection, returned to its pool when destroyed. A broken connection, or one left inside a
/// transaction, is discarded instead of reused. May outlive the Pool (the connection is then closed on return).
class Lease {
  public:
    Lease() = default;
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();

    Connection* operator->() const noexcept { return connection_.get(); }
    Connection& operator*() const noexcept { return *connection_; }
    explicit operator bool() const noexcept { return connection_ != nullptr; }
    /// Returns the connection now rather than at destruction.
    void release();

  private:
    friend class detail::PoolCore;
    Lease(std::shared_ptr<detail::PoolCore> core, std::unique_ptr<Connection> connection);

    std::shared_ptr<detail::PoolCore> core_;
    std::unique_ptr<Connection> connection_;
};

/// Counts for tests and diagnostics.
struct PoolStats {
    std::size_t idle = 0;
    std::size_t in_use = 0;
    std::size_t connecting = 0;
    std::size_t waiting = 0;
};

/// An asynchronous libpq connection pool for Asio coroutines.
///
/// Every call must run on `executor`, which must be single-threaded (one io_context thread, or a strand): the pool
/// takes no locks. healthy() alone may be read from any thread. The io_context must outlive the pool and its leases.
/// Metrics: db_query_duration_seconds, db_pool_connections{state}, db_pool_waiting, db_pool_wait_duration_seconds,
/// db_pool_max_connections, db_connect_errors_total, all labelled with `pool`.
class Pool {
  public:
    /// Opens nothing yet: connections are made on demand. `tracer` may be null (no spans).
    Pool(boost::asio::any_io_executor executor, PoolOptions options, trace::Tracer* tracer);
    /// Closes idle connections and fails waiting acquirers with DbError(unavailable).
    ~Pool();
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    /// An idle connection, a new one if there is room, or a place in the bounded wait queue. Throws
    /// DbError(pool_exhausted) when the queue is full, DbError(timeout) after acquire_timeout and
    /// DbError(unavailable) at once while the pool is unhealthy.
    boost::asio::awaitable<Lease> acquire();

    /// acquire() + Connection::query() + release. `query_name` is a bounded label ("user_by_id").
    boost::asio::awaitable<Result> query(std::string_view query_name, std::string_view sql, Params params = {},
                                         const trace::SpanContext* parent = nullptr);

    /// False after a failed connection attempt until one succeeds again (the pool retries by itself).
    bool healthy() const noexcept;
    /// SELECT 1 with a short deadline; false on any failure.
    boost::asio::awaitable<bool> ping();

    PoolStats stats() const;
    const PoolOptions& options() const;

  private:
    std::shared_ptr<detail::PoolCore> core_;
};

}  // namespace vigie::db
