#include "kit/db/pool.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <functional>
#include <optional>

#include "kit/db/instruments.hpp"
#include "kit/db/testing/pg_fixture.hpp"
#include "kit/metrics/registry.hpp"
#include "kit/trace/trace.hpp"

namespace vigie::db {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Runs the io_context until `task` finishes and returns its value (or rethrows). Stops at the task rather than at
// "no more work", because a pool's background reconnect probe may keep the context busy.
template <class T>
T run(asio::io_context& io, asio::awaitable<T> task) {
    bool done = false;
    std::exception_ptr failure;
    std::optional<std::conditional_t<std::is_void_v<T>, bool, T>> value;
    if constexpr (std::is_void_v<T>) {
        asio::co_spawn(io, std::move(task), [&](std::exception_ptr e) {
            failure = e;
            done = true;
        });
    } else {
        asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, T v) {
            failure = e;
            if (!e) {
                value.emplace(std::move(v));
            }
            done = true;
        });
    }
    io.restart();
    while (!done) {
        if (io.run_one() == 0) {
            throw std::logic_error("io_context ran out of work before the task finished");
        }
    }
    if (failure) {
        std::rethrow_exception(failure);
    }
    if constexpr (!std::is_void_v<T>) {
        return std::move(*value);
    }
}

// Runs the task and returns the DbError kind it threw; fails the test if it threw nothing.
template <class T>
std::optional<DbError::Kind> error_kind(asio::io_context& io, asio::awaitable<T> task) {
    try {
        run(io, std::move(task));
    } catch (const DbError& e) {
        return e.kind();
    }
    ADD_FAILURE() << "expected a DbError";
    return std::nullopt;
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
    asio::steady_timer timer(co_await asio::this_coro::executor, duration);
    co_await timer.async_wait(asio::use_awaitable);
}

class PoolTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() { conninfo_ = new std::string(testing::PgServer::shared().create_database("pool")); }
    static void TearDownTestSuite() {
        delete conninfo_;
        conninfo_ = nullptr;
    }

    PoolOptions options(std::string name, std::size_t size = 4) const {
        PoolOptions options;
        options.conninfo = *conninfo_;
        options.name = std::move(name);
        options.size = size;
        return options;
    }

    static inline std::string* conninfo_ = nullptr;
    asio::io_context io_;
};

TEST_F(PoolTest, ParamsAreDataNeverSql) {
    Pool pool(io_.get_executor(), options("params"), nullptr);
    run(io_, pool.query("create", "CREATE TABLE notes (id bigserial PRIMARY KEY, body text)"));
    const std::vector<std::string> nasty = {
        "'; DROP TABLE notes; --", "$1", "back\\slash", "quote\"d", "é ✓ \t\n", "Robert'); DELETE FROM notes;--"};
    for (const auto& body : nasty) {
        run(io_, pool.query("insert_note", "INSERT INTO notes (body) VALUES ($1)", {body}));
    }
    const Result result = run(io_, pool.query("list_notes", "SELECT id, body FROM notes ORDER BY id"));
    ASSERT_EQ(result.rows(), static_cast<int>(nasty.size()));
    for (int i = 0; i < result.rows(); ++i) {
        EXPECT_EQ(result.get<std::string>(i, "body"), nasty[static_cast<std::size_t>(i)]);
        EXPECT_EQ(result.get<std::int64_t>(i, "id"), i + 1);
    }
}

TEST_F(PoolTest, NullsAndTypes) {
    Pool pool(io_.get_executor(), options("types"), nullptr);
    const Result result =
        run(io_, pool.query("types", "SELECT $1::text AS t, $2::bigint AS n, true AS b, 2.5::float8 AS d, 7 AS i",
                            {std::nullopt, "9007199254740993"}));
    ASSERT_EQ(result.rows(), 1);
    EXPECT_TRUE(result.is_null(0, "t"));
    EXPECT_EQ(result.get<std::optional<std::string>>(0, "t"), std::nullopt);
    EXPECT_THROW(result.get<std::string>(0, "t"), DbError);
    EXPECT_EQ(result.get<std::int64_t>(0, "n"), 9007199254740993);
    EXPECT_EQ(result.get<std::optional<std::int64_t>>(0, "n"), 9007199254740993);
    EXPECT_TRUE(result.get<bool>(0, "b"));
    EXPECT_DOUBLE_EQ(result.get<double>(0, "d"), 2.5);
    EXPECT_EQ(result.get<int>(0, "i"), 7);
    EXPECT_THROW(result.get<std::int64_t>(0, "b"), DbError);  // "t" is not an integer
    EXPECT_THROW(result.get<int>(0, "nope"), DbError);
    EXPECT_THROW(result.get<int>(1, "i"), std::out_of_range);
}

TEST_F(PoolTest, AffectedRows) {
    Pool pool(io_.get_executor(), options("affected"), nullptr);
    run(io_, pool.query("create", "CREATE TABLE counters (k int PRIMARY KEY, v int)"));
    run(io_, pool.query("fill", "INSERT INTO counters SELECT g, 0 FROM generate_series(1, 5) g"));
    const Result updated = run(io_, pool.query("bump", "UPDATE counters SET v = v + 1 WHERE k > $1", {"2"}));
    EXPECT_EQ(updated.affected_rows(), 3);
    EXPECT_EQ(updated.rows(), 0);
}

TEST_F(PoolTest, ConstraintViolationIsClassifiedAndConnectionReused) {
    Pool pool(io_.get_executor(), options("constraint", 1), nullptr);
    run(io_, pool.query("create", "CREATE TABLE accounts (email text CONSTRAINT accounts_email_key UNIQUE)"));
    run(io_, pool.query("insert", "INSERT INTO accounts VALUES ($1)", {"a@example.com"}));
    try {
        run(io_, pool.query("insert", "INSERT INTO accounts VALUES ($1)", {"a@example.com"}));
        FAIL() << "duplicate accepted";
    } catch (const DbError& e) {
        EXPECT_EQ(e.kind(), DbError::Kind::constraint_violation);
        EXPECT_EQ(e.sqlstate(), "23505");
        EXPECT_EQ(e.constraint(), "accounts_email_key");
    }
    // A statement error leaves the connection healthy: it goes back to the pool.
    EXPECT_EQ(pool.stats().idle, 1u);
    EXPECT_EQ(error_kind(io_, pool.query("bad_sql", "SELEC 1")), DbError::Kind::other);
    EXPECT_EQ(run(io_, pool.query("count", "SELECT count(*) FROM accounts")).get<std::int64_t>(0, 0), 1);
    EXPECT_EQ(pool.stats().idle, 1u);
}

TEST_F(PoolTest, TransactionCommitsOrRollsBack) {
    Pool pool(io_.get_executor(), options("tx", 1), nullptr);
    run(io_, pool.query("create", "CREATE TABLE ledger (amount int NOT NULL)"));
    const int committed = run(io_, [&]() -> asio::awaitable<int> {
        Lease lease = co_await pool.acquire();
        co_return co_await lease->transaction([](Connection& c) -> asio::awaitable<int> {
            co_await c.query("insert", "INSERT INTO ledger VALUES (10)");
            co_await c.query("insert", "INSERT INTO ledger VALUES (20)");
            co_return 2;
        });
    }());
    EXPECT_EQ(committed, 2);
    EXPECT_THROW(run(io_,
                     [&]() -> asio::awaitable<void> {
                         Lease lease = co_await pool.acquire();
                         co_await lease->transaction([](Connection& c) -> asio::awaitable<void> {
                             co_await c.query("insert", "INSERT INTO ledger VALUES (30)");
                             co_await c.query("insert", "INSERT INTO ledger VALUES (NULL)");  // not-null violation
                         });
                     }()),
                 DbError);
    EXPECT_THROW(run(io_,
                     [&]() -> asio::awaitable<void> {
                         Lease lease = co_await pool.acquire();
                         co_await lease->transaction([](Connection& c) -> asio::awaitable<void> {
                             co_await c.query("insert", "INSERT INTO ledger VALUES (40)");
                             throw std::runtime_error("business rule");
                         });
                     }()),
                 std::runtime_error);
    EXPECT_EQ(run(io_, pool.query("sum", "SELECT sum(amount) FROM ledger")).get<std::int64_t>(0, 0), 30);
    EXPECT_EQ(pool.stats().idle, 1u);  // rolled back, so reusable
}

TEST_F(PoolTest, LeaseLeftInTransactionIsDiscarded) {
    Pool pool(io_.get_executor(), options("left_open", 1), nullptr);
    const auto pid = run(io_, [&]() -> asio::awaitable<std::int64_t> {
        Lease lease = co_await pool.acquire();
        co_await lease->query("begin", "BEGIN");
        co_return (co_await lease->query("pid", "SELECT pg_backend_pid()")).get<std::int64_t>(0, 0);
    }());
    EXPECT_EQ(pool.stats().idle, 0u);
    EXPECT_EQ(pool.stats().in_use, 0u);
    // The next caller gets a fresh session, not the one stuck inside the open transaction.
    EXPECT_NE(run(io_, pool.query("pid", "SELECT pg_backend_pid()")).get<std::int64_t>(0, 0), pid);
}

TEST_F(PoolTest, SerializationFailureIsClassified) {
    Pool pool(io_.get_executor(), options("serializable", 2), nullptr);
    run(io_, pool.query("create", "CREATE TABLE shifts (doctor text, on_call bool)"));
    run(io_, pool.query("fill", "INSERT INTO shifts VALUES ('alice', true), ('bob', true)"));
    // Classic write skew: each transaction reads both rows, then takes a different doctor off call.
    const auto kind = error_kind(io_, [&]() -> asio::awaitable<void> {
        Lease first = co_await pool.acquire();
        Lease second = co_await pool.acquire();
        for (Lease* lease : {&first, &second}) {
            co_await (*lease)->query("begin", begin_statement(Isolation::serializable));
            co_await (*lease)->query("count", "SELECT count(*) FROM shifts WHERE on_call");
        }
        co_await first->query("off", "UPDATE shifts SET on_call = false WHERE doctor = 'alice'");
        co_await second->query("off", "UPDATE shifts SET on_call = false WHERE doctor = 'bob'");
        co_await first->query("commit", "COMMIT");
        co_await second->query("commit", "COMMIT");
    }());
    EXPECT_EQ(kind, DbError::Kind::serialization);
}

TEST_F(PoolTest, DestroyingThePoolFailsWaiters) {
    std::optional<Pool> pool;
    pool.emplace(io_.get_executor(), options("closing", 1), nullptr);
    std::optional<DbError::Kind> waiter_error;
    run(io_, [&]() -> asio::awaitable<void> {
        Lease held = co_await pool->acquire();
        bool finished = false;
        asio::co_spawn(
            co_await asio::this_coro::executor,
            [&]() -> asio::awaitable<void> {
                try {
                    co_await pool->acquire();
                } catch (const DbError& e) {
                    waiter_error = e.kind();
                }
                finished = true;
            },
            asio::detached);
        co_await sleep_for(20ms);
        pool.reset();
        while (!finished) {
            co_await sleep_for(5ms);
        }
    }());
    EXPECT_EQ(waiter_error, DbError::Kind::unavailable);
}

TEST_F(PoolTest, ExhaustionIsBoundedAndWaitersAreServedInOrder) {
    PoolOptions opts = options("exhaust", 1);
    opts.max_waiters = 2;
    opts.acquire_timeout = 2000ms;
    Pool pool(io_.get_executor(), opts, nullptr);
    std::vector<std::string> order;
    std::optional<DbError::Kind> third;
    Clock::duration third_took{};
    run(io_, [&]() -> asio::awaitable<void> {
        auto executor = co_await asio::this_coro::executor;
        Lease held = co_await pool.acquire();
        int finished = 0;
        for (const char* name : {"first", "second"}) {
            asio::co_spawn(
                executor,
                [&, name]() -> asio::awaitable<void> {
                    Lease lease = co_await pool.acquire();
                    co_await lease->query("select_one", "SELECT 1");
                    order.emplace_back(name);
                    ++finished;
                },
                asio::detached);
        }
        co_await sleep_for(20ms);  // let both queue up
        EXPECT_EQ(pool.stats().waiting, 2u);
        const auto start = Clock::now();
        try {
            co_await pool.acquire();
        } catch (const DbError& e) {
            third = e.kind();
        }
        third_took = Clock::now() - start;
        held.release();
        while (finished < 2) {
            co_await sleep_for(5ms);
        }
    }());
    EXPECT_EQ(third, DbError::Kind::pool_exhausted);
    EXPECT_LT(third_took, 100ms);  // refused at once, not after acquire_timeout
    EXPECT_EQ(order, (std::vector<std::string>{"first", "second"}));
    EXPECT_EQ(pool.stats().waiting, 0u);
}

TEST_F(PoolTest, AcquireTimesOutWhenAllConnectionsStayBusy) {
    PoolOptions opts = options("acquire_timeout", 1);
    opts.acquire_timeout = 200ms;
    Pool pool(io_.get_executor(), opts, nullptr);
    const auto start = Clock::now();
    const auto kind = error_kind(io_, [&]() -> asio::awaitable<void> {
        Lease held = co_await pool.acquire();
        co_await pool.acquire();
    }());
    const auto took = Clock::now() - start;
    EXPECT_EQ(kind, DbError::Kind::timeout);
    EXPECT_GE(took, 200ms);
    EXPECT_LT(took, 1500ms);
    EXPECT_EQ(pool.stats().waiting, 0u);
}

TEST_F(PoolTest, QueryTimeoutDiscardsTheConnection) {
    PoolOptions opts = options("query_timeout", 1);
    opts.query_timeout = 300ms;
    Pool pool(io_.get_executor(), opts, nullptr);
    const auto pid_before = run(io_, pool.query("pid", "SELECT pg_backend_pid()")).get<std::int64_t>(0, 0);
    const auto start = Clock::now();
    EXPECT_EQ(error_kind(io_, pool.query("sleep", "SELECT pg_sleep(5)")), DbError::Kind::timeout);
    const auto took = Clock::now() - start;
    EXPECT_GE(took, 300ms);
    EXPECT_LT(took, 1500ms);
    EXPECT_EQ(pool.stats().idle, 0u);  // not returned to the pool
    const auto pid_after = run(io_, pool.query("pid", "SELECT pg_backend_pid()")).get<std::int64_t>(0, 0);
    EXPECT_NE(pid_before, pid_after);

    const auto& timeouts = detail::query_duration_family().with({"query_timeout", "sleep", "timeout"});
    EXPECT_EQ(timeouts.snapshot().count, 1u);
}

TEST_F(PoolTest, ConcurrentQueriesShareBoundedConnections) {
    // Named constants: GCC 12 miscompiles ("array used as initializer") string literals in this nested coroutine.
    static constexpr std::string_view kEcho = "echo";
    static constexpr std::string_view kEchoSql = "SELECT $1::int + 0, pg_sleep(0.01)";
    Pool pool(io_.get_executor(), options("concurrent", 3), nullptr);
    int ok = 0;
    std::size_t peak = 0;
    const auto started = Clock::now();
    run(io_, [&]() -> asio::awaitable<void> {
        auto executor = co_await asio::this_coro::executor;
        for (int i = 0; i < 20; ++i) {
            asio::co_spawn(
                executor,
                [&, i]() -> asio::awaitable<void> {
                    Params params{std::to_string(i)};
                    const Result r = co_await pool.query(kEcho, kEchoSql, std::move(params));
                    peak = std::max(peak, pool.stats().in_use);
                    if (r.get<int>(0, 0) == i) {
                        ++ok;
                    }
                },
                asio::detached);
        }
        while (ok < 20 && Clock::now() - started < 5s) {
            co_await sleep_for(5ms);
        }
    }());
    EXPECT_EQ(ok, 20);
    EXPECT_LE(peak, 3u);
    EXPECT_LE(pool.stats().idle, 3u);
}

TEST_F(PoolTest, TerminatedIdleConnectionIsDroppedOnCheckout) {
    Pool pool(io_.get_executor(), options("terminated", 1), nullptr);
    const auto pid = run(io_, pool.query("pid", "SELECT pg_backend_pid()")).get<std::int64_t>(0, 0);
    {
        Pool other(io_.get_executor(), options("terminator", 1), nullptr);
        run(io_, other.query("kill", "SELECT pg_terminate_backend($1::int)", {std::to_string(pid)}));
    }
    run(io_, sleep_for(50ms));  // let the FATAL message reach the idle socket
    // The dead idle connection is noticed and replaced: the caller sees no error.
    const auto new_pid = run(io_, pool.query("pid", "SELECT pg_backend_pid()")).get<std::int64_t>(0, 0);
    EXPECT_NE(new_pid, pid);
    EXPECT_TRUE(pool.healthy());
}

TEST_F(PoolTest, LeaseMayOutliveThePool) {
    std::optional<Pool> pool;
    pool.emplace(io_.get_executor(), options("outlive", 1), nullptr);
    Lease lease = run(io_, pool->acquire());
    pool.reset();
    EXPECT_EQ(run(io_, lease->query("one", "SELECT 1")).get<int>(0, 0), 1);
    lease.release();  // closes the connection instead of returning it
}

TEST_F(PoolTest, MetricsAndSpans) {
    trace::Tracer tracer(trace::TracerOptions{.service_name = "db-test"});
    Pool pool(io_.get_executor(), options("metrics", 2), &tracer);
    const trace::SpanContext parent = tracer.start_span("request", trace::SpanKind::server, nullptr).context();
    run(io_, pool.query("select_one", "SELECT 1", {}, &parent));
    run(io_, pool.query("select_one", "SELECT 1"));
    EXPECT_THROW(run(io_, pool.query("broken_sql", "SELECT FROM WHERE")), DbError);

    auto& family = detail::query_duration_family();
    EXPECT_EQ(family.with({"metrics", "select_one", "ok"}).snapshot().count, 2u);
    EXPECT_EQ(family.with({"metrics", "broken_sql", "error"}).snapshot().count, 1u);
    auto& registry = metrics::registry();
    EXPECT_EQ(registry.gauge("db_pool_connections", "", {"pool", "state"}).with({"metrics", "idle"}).value(), 1);
    EXPECT_EQ(registry.gauge("db_pool_connections", "", {"pool", "state"}).with({"metrics", "in_use"}).value(), 0);
    EXPECT_EQ(registry.gauge("db_pool_max_connections", "", {"pool"}).with({"metrics"}).value(), 2);
    EXPECT_EQ(registry.histogram("db_pool_wait_duration_seconds", "", {"pool"}).with({"metrics"}).snapshot().count, 3u);
    const std::string text = registry.render();
    EXPECT_NE(text.find("db_connect_errors_total"), std::string::npos);
    EXPECT_NE(text.find("db_pool_waiting"), std::string::npos);
}

TEST_F(PoolTest, PingReportsReachability) {
    Pool pool(io_.get_executor(), options("ping", 1), nullptr);
    EXPECT_TRUE(run(io_, pool.ping()));
    PoolOptions nowhere = options("ping_nowhere", 1);
    nowhere.conninfo = testing::with_dbname(*conninfo_, "no_such_database");
    Pool broken(io_.get_executor(), nowhere, nullptr);
    EXPECT_FALSE(run(io_, broken.ping()));
    EXPECT_FALSE(broken.healthy());
}

// Stops the shared server, so it restarts it whatever happens.
TEST_F(PoolTest, DatabaseDownFailsFastAndRecoversByItself) {
    auto& server = testing::PgServer::shared();
    if (!server.owned()) {
        GTEST_SKIP() << "needs a private server (VIGIE_TEST_PG_CONNINFO is set)";
    }
    PoolOptions opts = options("outage", 2);
    opts.reconnect_interval = 200ms;
    Pool pool(io_.get_executor(), opts, nullptr);
    run(io_, pool.query("select_one", "SELECT 1"));
    ASSERT_TRUE(pool.healthy());

    struct Restart {
        testing::PgServer& server;
        bool stopped = false;
        ~Restart() {
            if (stopped) {
                server.start();
            }
        }
    } restart{server};
    server.stop();
    restart.stopped = true;

    auto start = Clock::now();
    EXPECT_EQ(error_kind(io_, pool.query("select_one", "SELECT 1")), DbError::Kind::unavailable);
    EXPECT_LT(Clock::now() - start, 500ms);
    EXPECT_FALSE(pool.healthy());
    start = Clock::now();
    EXPECT_EQ(error_kind(io_, pool.query("select_one", "SELECT 1")), DbError::Kind::unavailable);
    EXPECT_LT(Clock::now() - start, 100ms);  // remembered, not retried per request
    EXPECT_FALSE(run(io_, pool.ping()));

    server.start();
    restart.stopped = false;
    // No traffic: the pool's own probe must notice the database is back.
    start = Clock::now();
    run(io_, [&]() -> asio::awaitable<void> {
        while (!pool.healthy() && Clock::now() - start < 5s) {
            co_await sleep_for(20ms);
        }
    }());
    EXPECT_TRUE(pool.healthy());
    EXPECT_LT(Clock::now() - start, 5s);
    EXPECT_EQ(run(io_, pool.query("select_one", "SELECT 1")).get<int>(0, 0), 1);
    const double errors = metrics::registry().counter("db_connect_errors_total", "", {"pool"}).with({"outage"}).value();
    EXPECT_GE(errors, 1);
}

}  // namespace
}  // namespace vigie::db
