#include "kit/db/pool.hpp"

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <stdexcept>

#include "kit/db/instruments.hpp"
#include "kit/log/log.hpp"
#include "kit/metrics/registry.hpp"

namespace vigie::db {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace detail {

metrics::Family<metrics::Histogram>& query_duration_family() {
    return metrics::registry().histogram("db_query_duration_seconds",
                                         "Duration of database statements by pool, named query and outcome.",
                                         {"pool", "query", "outcome"});
}

namespace {

// An acquirer parked in the wait queue. It lives in the acquiring coroutine's frame; the pool wakes it by
// cancelling its timer after filling in why.
struct Waiter {
    Waiter(const asio::any_io_executor& executor, Clock::time_point deadline, std::deque<Waiter*>& queue)
        : timer(executor, deadline), queue(queue) {}
    // If the coroutine frame is destroyed while parked (its io_context shutting down), leave no dangling entry.
    ~Waiter() {
        if (auto it = std::find(queue.begin(), queue.end(), this); it != queue.end()) {
            queue.erase(it);
        }
    }
    Waiter(const Waiter&) = delete;
    Waiter& operator=(const Waiter&) = delete;

    asio::steady_timer timer;
    std::unique_ptr<Connection> handed;  // a connection passed on directly by release()
    bool slot = false;                   // room freed up: the waiter may open a connection itself
    std::optional<DbError> failure;      // the pool closed or the database is unreachable
    std::deque<Waiter*>& queue;
};

constexpr std::chrono::milliseconds kPingTimeout{1000};
// Server-side backstop beyond the client deadline, so a statement the client abandoned does not run for long.
constexpr std::chrono::milliseconds kStatementTimeoutMargin{1000};

}  // namespace

class PoolCore : public std::enable_shared_from_this<PoolCore> {
  public:
    PoolCore(asio::any_io_executor executor, PoolOptions options, trace::Tracer* tracer)
        : executor_(std::move(executor)),
          options_(std::move(options)),
          connections_(
              metrics::registry().gauge("db_pool_connections", "Pool connections by state.", {"pool", "state"})),
          in_use_gauge_(connections_.with({options_.name, "in_use"})),
          idle_gauge_(connections_.with({options_.name, "idle"})),
          waiting_gauge_(metrics::registry()
                             .gauge("db_pool_waiting", "Acquirers waiting for a pool connection.", {"pool"})
                             .with({options_.name})),
          wait_duration_(
              metrics::registry()
                  .histogram("db_pool_wait_duration_seconds", "Time spent acquiring a pool connection.", {"pool"})
                  .with({options_.name})),
          connect_errors_(
              metrics::registry()
                  .counter("db_connect_errors_total", "Failed attempts to open a database connection.", {"pool"})
                  .with({options_.name})),
          probe_timer_(executor_) {
        if (options_.size == 0) {
            throw std::invalid_argument("db pool size must be at least 1");
        }
        auto instruments = std::make_shared<Instruments>();
        instruments->pool_name = options_.name;
        instruments->tracer = tracer;
        instruments->query_timeout = options_.query_timeout;
        instruments->statement_timeout = options_.query_timeout + kStatementTimeoutMargin;
        instruments->query_duration = &query_duration_family();
        instruments_ = std::move(instruments);
        metrics::registry()
            .gauge("db_pool_max_connections", "Configured maximum pool size.", {"pool"})
            .with({options_.name})
            .set(static_cast<double>(options_.size));
        update_gauges();
    }

    asio::awaitable<Lease> acquire() {
        const auto start = Clock::now();
        const auto deadline = start + options_.acquire_timeout;
        auto self = shared_from_this();
        bool front = false;  // a waiter woken for a freed slot keeps its place if it has to wait again
        while (true) {
            if (closed_) {
                throw DbError(DbError::Kind::unavailable, "database pool is closed");
            }
            while (!idle_.empty()) {
                // Most recently used first: the rest stay idle and warm.
                std::unique_ptr<Connection> connection = std::move(idle_.back());
                idle_.pop_back();
                if (!connection->check_alive()) {
                    continue;  // dropped; its slot is the one we are about to use
                }
                co_return lend(std::move(connection), start);
            }
            if (!healthy_) {
                // The background probe is reconnecting; requests fail at once instead of each waiting for a
                // connect timeout of their own.
                throw DbError(DbError::Kind::unavailable, "database unavailable: " + last_error_);
            }
            if (total() < options_.size) {
                auto connection = co_await open();  // throws DbError(unavailable)
                co_return lend(std::move(connection), start);
            }
            if (waiters_.size() >= options_.max_waiters) {
                throw DbError(DbError::Kind::pool_exhausted, "database pool '" + options_.name + "' exhausted: " +
                                                                 std::to_string(options_.max_waiters) +
                                                                 " acquirers already waiting");
            }
            Waiter waiter(executor_, deadline, waiters_);
            if (front) {
                waiters_.push_front(&waiter);
            } else {
                waiters_.push_back(&waiter);
            }
            update_gauges();
            boost::system::error_code ignored;
            co_await waiter.timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
            forget(&waiter);
            if (waiter.handed) {
                co_return lend_handed(std::move(waiter.handed), start);
            }
            if (waiter.failure) {
                throw *waiter.failure;
            }
            if (!waiter.slot && Clock::now() >= deadline) {
                wait_duration_.observe(std::chrono::duration<double>(Clock::now() - start).count());
                throw DbError(DbError::Kind::timeout, "no database connection within " +
                                                          std::to_string(options_.acquire_timeout.count()) +
                                                          " ms (pool '" + options_.name + "' busy)");
            }
            front = waiter.slot;
        }
    }

    void release(std::unique_ptr<Connection> connection) {
        // A connection mid-statement or mid-transaction (its user threw or was destroyed) cannot be handed on.
        if (closed_ || connection->broken() || connection->busy() || connection->in_transaction()) {
            --in_use_;
            connection.reset();
            slot_freed();
        } else if (!waiters_.empty()) {
            hand_to_waiter(std::move(connection));  // stays in use, by the next holder
        } else {
            --in_use_;
            idle_.push_back(std::move(connection));
        }
        update_gauges();
    }

    void close() {
        closed_ = true;
        idle_.clear();
        probe_timer_.cancel();
        fail_waiters(DbError(DbError::Kind::unavailable, "database pool is closed"));
        update_gauges();
    }

    bool healthy() const noexcept { return healthy_.load(std::memory_order_relaxed); }

    PoolStats stats() const { return {idle_.size(), in_use_, connecting_, waiters_.size()}; }

    const PoolOptions& options() const { return options_; }

  private:
    std::size_t total() const { return idle_.size() + in_use_ + connecting_; }

    Lease lend(std::unique_ptr<Connection> connection, Clock::time_point start) {
        ++in_use_;
        return lend_handed(std::move(connection), start);
    }

    // For a connection already counted in use (passed from one lease to the next).
    Lease lend_handed(std::unique_ptr<Connection> connection, Clock::time_point start) {
        update_gauges();
        wait_duration_.observe(std::chrono::duration<double>(Clock::now() - start).count());
        return Lease(shared_from_this(), std::move(connection));
    }

    asio::awaitable<std::unique_ptr<Connection>> open() {
        auto self = shared_from_this();
        ++connecting_;
        std::unique_ptr<Connection> connection;
        std::optional<DbError> failure;
        try {
            connection =
                co_await Connection::connect(executor_, options_.conninfo, options_.connect_timeout, instruments_);
        } catch (const DbError& e) {
            failure.emplace(e);
        } catch (const std::exception& e) {
            failure.emplace(DbError::Kind::unavailable, std::string("cannot connect to PostgreSQL: ") + e.what());
        }
        --connecting_;
        if (failure) {
            connect_failed(*failure);
            throw *failure;
        }
        connect_succeeded();
        if (closed_) {
            throw DbError(DbError::Kind::unavailable, "database pool is closed");
        }
        co_return connection;
    }

    void connect_succeeded() {
        if (!healthy_.exchange(true)) {
            log::info("database connection restored", {{"db.pool", options_.name}});
        }
    }

    void connect_failed(const DbError& error) {
        connect_errors_.inc();
        last_error_ = error.what();
        next_connect_at_ = Clock::now() + options_.reconnect_interval;
        if (healthy_.exchange(false)) {
            log::error("database unavailable", {{"db.pool", options_.name}, {"error.message", last_error_}});
        }
        // Queued acquirers would only wait for connections that will not come: fail them now.
        fail_waiters(DbError(DbError::Kind::unavailable, "database unavailable: " + last_error_));
        start_probe();
        update_gauges();
    }

    // Reconnects in the background while unhealthy, so readiness recovers without traffic.
    void start_probe() {
        if (probing_ || closed_) {
            return;
        }
        probing_ = true;
        asio::co_spawn(executor_, probe(shared_from_this()), asio::detached);
    }

    static asio::awaitable<void> probe(std::shared_ptr<PoolCore> self) {
        while (!self->closed_ && !self->healthy_) {
            self->probe_timer_.expires_at(self->next_connect_at_);
            boost::system::error_code ignored;
            co_await self->probe_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
            if (self->closed_ || self->healthy_) {
                break;
            }
            if (self->total() >= self->options_.size) {
                // Every slot is taken by a connection still out on lease: look again later.
                self->next_connect_at_ = Clock::now() + self->options_.reconnect_interval;
                continue;
            }
            try {
                auto connection = co_await self->open();
                if (!self->waiters_.empty()) {
                    ++self->in_use_;
                    self->hand_to_waiter(std::move(connection));
                } else {
                    self->idle_.push_back(std::move(connection));
                }
                self->update_gauges();
            } catch (const DbError&) {
                // connect_failed() recorded it and moved next_connect_at_.
            }
        }
        self->probing_ = false;
    }

    void hand_to_waiter(std::unique_ptr<Connection> connection) {
        Waiter* waiter = waiters_.front();
        waiters_.pop_front();
        waiter->handed = std::move(connection);
        waiter->timer.cancel();
    }

    void slot_freed() {
        if (!waiters_.empty()) {
            Waiter* waiter = waiters_.front();
            waiters_.pop_front();
            waiter->slot = true;
            waiter->timer.cancel();
        }
    }

    void fail_waiters(const DbError& error) {
        while (!waiters_.empty()) {
            Waiter* waiter = waiters_.front();
            waiters_.pop_front();
            waiter->failure.emplace(error);
            waiter->timer.cancel();
        }
    }

    void forget(Waiter* waiter) {
        if (auto it = std::find(waiters_.begin(), waiters_.end(), waiter); it != waiters_.end()) {
            waiters_.erase(it);
        }
        update_gauges();
    }

    void update_gauges() {
        in_use_gauge_.set(static_cast<double>(in_use_));
        idle_gauge_.set(static_cast<double>(idle_.size()));
        waiting_gauge_.set(static_cast<double>(waiters_.size()));
    }

    asio::any_io_executor executor_;
    PoolOptions options_;
    std::shared_ptr<const Instruments> instruments_;
    metrics::Family<metrics::Gauge>& connections_;
    metrics::Gauge& in_use_gauge_;
    metrics::Gauge& idle_gauge_;
    metrics::Gauge& waiting_gauge_;
    metrics::Histogram& wait_duration_;
    metrics::Counter& connect_errors_;

    std::deque<std::unique_ptr<Connection>> idle_;
    std::size_t in_use_ = 0;
    std::size_t connecting_ = 0;
    std::deque<Waiter*> waiters_;
    std::atomic<bool> healthy_{true};
    bool closed_ = false;
    bool probing_ = false;
    Clock::time_point next_connect_at_{};
    std::string last_error_;
    asio::steady_timer probe_timer_;
};

}  // namespace detail

Lease::Lease(std::shared_ptr<detail::PoolCore> core, std::unique_ptr<Connection> connection)
    : core_(std::move(core)), connection_(std::move(connection)) {}

Lease& Lease::operator=(Lease&& other) noexcept {
    if (this != &other) {
        release();
        core_ = std::move(other.core_);
        connection_ = std::move(other.connection_);
    }
    return *this;
}

Lease::~Lease() {
    release();
}

void Lease::release() {
    if (connection_ && core_) {
        core_->release(std::move(connection_));
    }
    connection_.reset();
    core_.reset();
}

Pool::Pool(asio::any_io_executor executor, PoolOptions options, trace::Tracer* tracer)
    : core_(std::make_shared<detail::PoolCore>(std::move(executor), std::move(options), tracer)) {}

Pool::~Pool() {
    core_->close();
}

// The coroutines below copy core_ so that the core outlives them even if the Pool object does not.
asio::awaitable<Lease> Pool::acquire() {
    auto core = core_;
    co_return co_await core->acquire();
}

asio::awaitable<Result> Pool::query(std::string_view query_name, std::string_view sql, Params params,
                                    const trace::SpanContext* parent) {
    auto core = core_;
    Lease lease = co_await core->acquire();
    co_return co_await lease->query(query_name, sql, std::move(params), parent);
}

bool Pool::healthy() const noexcept {
    return core_->healthy();
}

asio::awaitable<bool> Pool::ping() {
    auto core = core_;
    try {
        Lease lease = co_await core->acquire();
        co_await lease->query("ping", "SELECT 1", {}, nullptr,
                              std::min(core->options().query_timeout, std::chrono::milliseconds(detail::kPingTimeout)));
        co_return true;
    } catch (const DbError&) {
        co_return false;
    }
}

PoolStats Pool::stats() const {
    return core_->stats();
}

const PoolOptions& Pool::options() const {
    return core_->options();
}

}  // namespace vigie::db
