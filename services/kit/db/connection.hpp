#pragma once

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without including it

// Asio and the standard library
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "kit/db/result.hpp"

// libpq's connection type, kept opaque.
struct pg_conn;

namespace vigie::trace {
class Tracer;
struct SpanContext;
}  // namespace vigie::trace

namespace vigie::db {

/// Positional parameters $1, $2, ... in text format; std::nullopt is SQL NULL. Values are sent apart from the
/// SQL text, so quotes and semicolons in them are data, never syntax.
using Params = std::vector<std::optional<std::string>>;

enum class Isolation { read_committed, repeatable_read, serializable };

namespace detail {
/// What a pool lends its connections: metric handles, tracer, labels, default query timeout.
struct Instruments;
}  // namespace detail

/// One PostgreSQL connection driven with libpq's non-blocking API on an Asio executor.
///
/// Not thread-safe and one statement at a time; use it from the executor it was created on. Usually obtained
/// through Pool::acquire(); connect() exists for tools and tests. string_view arguments must stay valid until the
/// returned awaitable completes (true when it is awaited in the same expression, the normal case).
class Connection {
  public:
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    /// Opens a connection within `timeout`. Throws DbError(unavailable) on failure or when the deadline passes.
    /// libpq resolves a `host` name synchronously in PQconnectStart; use `hostaddr` or a unix socket directory
    /// where a slow resolver must not stall the executor.
    static boost::asio::awaitable<std::unique_ptr<Connection>> connect(
        boost::asio::any_io_executor executor, std::string conninfo, std::chrono::milliseconds timeout,
        std::shared_ptr<const detail::Instruments> instruments = nullptr);

    /// Runs one statement. `query_name` is a bounded metric label and span name ("user_by_id"). A span is recorded
    /// when `parent` is given and the pool has a tracer. Uses the pool's query timeout (2 s without a pool); on
    /// timeout the connection is marked broken (the server may still be busy with it) and DbError(timeout) thrown.
    boost::asio::awaitable<Result> query(std::string_view query_name, std::string_view sql, Params params = {},
                                         const trace::SpanContext* parent = nullptr);
    /// Same with an explicit timeout.
    boost::asio::awaitable<Result> query(std::string_view query_name, std::string_view sql, Params params,
                                         const trace::SpanContext* parent, std::chrono::milliseconds timeout);

    /// BEGIN; co_await body(*this); COMMIT — or ROLLBACK and rethrow when the body throws. Returns the body's
    /// value. A serialization failure surfaces as DbError(serialization): retrying is the caller's decision.
    template <class F, class A = std::invoke_result_t<F&, Connection&>>
    A transaction(F body, Isolation isolation = Isolation::read_committed);

    /// True once the connection cannot be trusted (lost, timed out mid-statement): the pool discards it.
    bool broken() const noexcept { return broken_; }
    /// True between BEGIN and COMMIT/ROLLBACK (or in a failed transaction).
    bool in_transaction() const;
    /// True while a statement is running.
    bool busy() const noexcept { return busy_; }
    /// For an idle connection: reads whatever the server sent meanwhile without blocking and says whether the
    /// connection still looks usable (the server closes idle sessions on shutdown).
    bool check_alive();
    /// The database name from the connection parameters.
    std::string_view database() const;

  private:
    Connection(const boost::asio::any_io_executor& executor, pg_conn* connection,
               std::shared_ptr<const detail::Instruments> instruments);

    boost::asio::awaitable<Result> run(std::string_view sql, const Params& params,
                                       std::chrono::steady_clock::time_point deadline);
    boost::asio::awaitable<void> rollback_quietly();
    [[noreturn]] void fail_from_connection(std::string_view what);
    void observe(std::string_view query_name, std::string_view outcome, std::chrono::steady_clock::duration elapsed);

    pg_conn* connection_;
    boost::asio::posix::stream_descriptor socket_;
    std::shared_ptr<const detail::Instruments> instruments_;
    bool broken_ = false;
    bool busy_ = false;
};

/// The BEGIN statement for an isolation level.
std::string_view begin_statement(Isolation isolation);

template <class F, class A>
A Connection::transaction(F body, Isolation isolation) {
    using T = typename A::value_type;
    co_await query("begin", begin_statement(isolation));
    std::exception_ptr failure;
    std::optional<std::conditional_t<std::is_void_v<T>, bool, T>> value;
    try {
        if constexpr (std::is_void_v<T>) {
            co_await body(*this);
            value.emplace(true);
        } else {
            value.emplace(co_await body(*this));
        }
    } catch (...) {
        // co_await is not allowed in a handler: remember the failure and roll back below.
        failure = std::current_exception();
    }
    if (failure) {
        co_await rollback_quietly();
        std::rethrow_exception(failure);
    }
    co_await query("commit", "COMMIT");
    if constexpr (!std::is_void_v<T>) {
        co_return std::move(*value);
    }
}

}  // namespace vigie::db
