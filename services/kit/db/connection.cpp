#include "kit/db/connection.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cctype>

#include "kit/db/instruments.hpp"
#include "kit/log/log.hpp"
#include "kit/trace/trace.hpp"

namespace vigie::db {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using Descriptor = asio::posix::stream_descriptor;

constexpr std::chrono::milliseconds kStandaloneQueryTimeout{2000};
// The extended protocol counts parameters in an int16.
constexpr std::size_t kMaxParams = 65535;

enum class WaitOutcome { ready, deadline, failed };

// Shared with the deadline timer's handler, which may run after the waiting coroutine has moved on.
struct WaitState {
    Descriptor* socket = nullptr;
    bool fired = false;
};

// Waits until `socket` is readable/writable or `deadline` passes. Boost 1.74 has no per-operation cancellation, so
// a timer cancels the descriptor's pending wait instead.
asio::awaitable<WaitOutcome> wait_socket(Descriptor& socket, Descriptor::wait_type type, Clock::time_point deadline) {
    if (Clock::now() >= deadline) {
        co_return WaitOutcome::deadline;
    }
    asio::steady_timer timer(socket.get_executor(), deadline);
    auto state = std::make_shared<WaitState>();
    state->socket = &socket;
    timer.async_wait([state](const boost::system::error_code& ec) {
        if (!ec && state->socket != nullptr) {
            state->fired = true;
            boost::system::error_code ignored;
            state->socket->cancel(ignored);
        }
    });
    boost::system::error_code ec;
    co_await socket.async_wait(type, asio::redirect_error(asio::use_awaitable, ec));
    state->socket = nullptr;
    timer.cancel();
    if (state->fired) {
        co_return WaitOutcome::deadline;
    }
    co_return ec ? WaitOutcome::failed : WaitOutcome::ready;
}

// libpq owns the socket: the descriptor only borrows it, and must give it back before libpq closes it.
struct BorrowedDescriptor {
    Descriptor& socket;
    ~BorrowedDescriptor() {
        if (socket.is_open()) {
            socket.release();
        }
    }
};

struct ConnDeleter {
    void operator()(PGconn* connection) const { PQfinish(connection); }
};

std::string trimmed_error(PGconn* connection) {
    std::string message = connection != nullptr ? PQerrorMessage(connection) : "out of memory";
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
        message.pop_back();
    }
    return message.empty() ? "unknown libpq error" : message;
}

DbError error_from_result(PGresult* result, PGconn* connection) {
    const char* sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    const char* constraint = PQresultErrorField(result, PG_DIAG_CONSTRAINT_NAME);
    std::string message = primary != nullptr ? primary : PQresultErrorMessage(result);
    while (!message.empty() && message.back() == '\n') {
        message.pop_back();
    }
    DbError::Kind kind = DbError::Kind::other;
    if (sqlstate != nullptr) {
        kind = classify_sqlstate(sqlstate);
    } else if (PQstatus(connection) == CONNECTION_BAD) {
        kind = DbError::Kind::unavailable;  // client-side error: the connection went away
    }
    return DbError(kind, message, sqlstate != nullptr ? sqlstate : "", constraint != nullptr ? constraint : "");
}

// First keyword of the statement, upper-cased: a cheap, bounded db.operation.
std::string operation_of(std::string_view sql) {
    std::size_t begin = 0;
    while (begin < sql.size() && std::isspace(static_cast<unsigned char>(sql[begin]))) {
        ++begin;
    }
    std::string operation;
    for (std::size_t i = begin; i < sql.size() && std::isalpha(static_cast<unsigned char>(sql[i])) && i < begin + 16;
         ++i) {
        operation += static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i])));
    }
    return operation;
}

}  // namespace

std::string_view begin_statement(Isolation isolation) {
    switch (isolation) {
        case Isolation::read_committed:
            return "BEGIN ISOLATION LEVEL READ COMMITTED";
        case Isolation::repeatable_read:
            return "BEGIN ISOLATION LEVEL REPEATABLE READ";
        case Isolation::serializable:
            return "BEGIN ISOLATION LEVEL SERIALIZABLE";
    }
    return "BEGIN";
}

Connection::Connection(const asio::any_io_executor& executor, PGconn* connection,
                       std::shared_ptr<const detail::Instruments> instruments)
    : connection_(connection), socket_(executor), instruments_(std::move(instruments)) {
    try {
        socket_.assign(PQsocket(connection_));
    } catch (...) {
        PQfinish(connection_);  // the destructor will not run
        throw;
    }
}

Connection::~Connection() {
    if (socket_.is_open()) {
        socket_.release();
    }
    PQfinish(connection_);
}

asio::awaitable<std::unique_ptr<Connection>> Connection::connect(
    asio::any_io_executor executor, std::string conninfo, std::chrono::milliseconds timeout,
    std::shared_ptr<const detail::Instruments> instruments) {
    const auto deadline = Clock::now() + timeout;
    std::unique_ptr<PGconn, ConnDeleter> connection(PQconnectStart(conninfo.c_str()));
    if (!connection || PQstatus(connection.get()) == CONNECTION_BAD) {
        throw DbError(DbError::Kind::unavailable, "cannot connect to PostgreSQL: " + trimmed_error(connection.get()));
    }
    Descriptor socket(executor);
    // Before the first PQconnectPoll, libpq says to behave as if it had asked to wait for writing.
    PostgresPollingStatusType status = PGRES_POLLING_WRITING;
    while (status != PGRES_POLLING_OK) {
        if (status == PGRES_POLLING_FAILED) {
            throw DbError(DbError::Kind::unavailable,
                          "cannot connect to PostgreSQL: " + trimmed_error(connection.get()));
        }
        const int fd = PQsocket(connection.get());
        if (fd < 0) {
            throw DbError(DbError::Kind::unavailable, "cannot connect to PostgreSQL: no socket");
        }
        WaitOutcome outcome;
        {
            // libpq may close and reopen its socket between steps (next host or address, SSL fallback), possibly
            // under the same number, so the descriptor is registered afresh for every wait.
            socket.assign(fd);
            BorrowedDescriptor borrowed{socket};
            outcome = co_await wait_socket(
                socket, status == PGRES_POLLING_READING ? Descriptor::wait_read : Descriptor::wait_write, deadline);
        }
        if (outcome == WaitOutcome::deadline) {
            throw DbError(DbError::Kind::unavailable,
                          "cannot connect to PostgreSQL: no answer within " + std::to_string(timeout.count()) + " ms");
        }
        if (outcome == WaitOutcome::failed) {
            throw DbError(DbError::Kind::unavailable, "cannot connect to PostgreSQL: socket wait failed");
        }
        status = PQconnectPoll(connection.get());
    }
    if (PQsetnonblocking(connection.get(), 1) != 0) {
        throw DbError(DbError::Kind::unavailable,
                      "cannot make the connection non-blocking: " + trimmed_error(connection.get()));
    }
    std::unique_ptr<Connection> result(new Connection(executor, connection.release(), std::move(instruments)));
    if (result->instruments_ && result->instruments_->statement_timeout.count() > 0) {
        // A backstop for statements the client gave up on: without it the server would keep running them after
        // the connection is discarded, holding locks and a backend.
        const std::string set =
            "SET statement_timeout = " + std::to_string(result->instruments_->statement_timeout.count());
        co_await result->run(set, {}, deadline);
    }
    co_return result;
}

bool Connection::in_transaction() const {
    return PQtransactionStatus(connection_) != PQTRANS_IDLE;
}

std::string_view Connection::database() const {
    const char* name = PQdb(connection_);
    return name != nullptr ? name : "";
}

bool Connection::check_alive() {
    if (broken_ || PQstatus(connection_) != CONNECTION_OK) {
        broken_ = true;
        return false;
    }
    pollfd descriptor{PQsocket(connection_), POLLIN, 0};
    const int ready = ::poll(&descriptor, 1, 0);
    if (ready <= 0) {
        return true;  // nothing arrived while idle: as good as we can tell without a round trip
    }
    if ((descriptor.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0 || PQconsumeInput(connection_) == 0 ||
        PQstatus(connection_) != CONNECTION_OK) {
        broken_ = true;
        return false;
    }
    while (PGnotify* notify = PQnotifies(connection_)) {
        PQfreemem(notify);
    }
    return true;
}

void Connection::fail_from_connection(std::string_view what) {
    broken_ = true;
    throw DbError(DbError::Kind::unavailable, std::string(what) + ": " + trimmed_error(connection_));
}

asio::awaitable<Result> Connection::run(std::string_view sql, const Params& params, Clock::time_point deadline) {
    if (busy_) {
        throw DbError(DbError::Kind::other, "connection is already running a statement");
    }
    if (broken_) {
        throw DbError(DbError::Kind::unavailable, "connection is broken");
    }
    if (params.size() > kMaxParams) {
        throw DbError(DbError::Kind::other, "too many parameters");
    }
    busy_ = true;
    struct BusyReset {
        bool& busy;
        ~BusyReset() { busy = false; }
    } busy_reset{busy_};

    const std::string statement(sql);  // libpq wants NUL-terminated text
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& param : params) {
        values.push_back(param ? param->c_str() : nullptr);
    }
    if (PQsendQueryParams(connection_, statement.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                          nullptr, nullptr, 0) == 0) {
        fail_from_connection("cannot send statement");
    }

    while (true) {
        const int flushed = PQflush(connection_);
        if (flushed == 0) {
            break;
        }
        if (flushed < 0) {
            fail_from_connection("cannot send statement");
        }
        const auto outcome = co_await wait_socket(socket_, Descriptor::wait_write, deadline);
        if (outcome == WaitOutcome::deadline) {
            broken_ = true;
            throw DbError(DbError::Kind::timeout, "statement timed out while sending");
        }
        if (outcome == WaitOutcome::failed) {
            fail_from_connection("socket wait failed");
        }
        // libpq asks to read whatever the server sent while we were blocked on writing.
        if (PQconsumeInput(connection_) == 0) {
            fail_from_connection("connection lost");
        }
    }

    Result result;
    std::optional<DbError> error;
    while (true) {
        if (PQconsumeInput(connection_) == 0) {
            fail_from_connection("connection lost");
        }
        bool done = false;
        while (PQisBusy(connection_) == 0) {
            PGresult* raw = PQgetResult(connection_);
            if (raw == nullptr) {
                done = true;
                break;
            }
            const ExecStatusType status = PQresultStatus(raw);
            if (status == PGRES_FATAL_ERROR) {
                if (!error) {
                    error.emplace(error_from_result(raw, connection_));
                }
                PQclear(raw);
            } else if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
                PQclear(raw);
                broken_ = true;  // the protocol is now in COPY mode, which this class does not speak
                throw DbError(DbError::Kind::other, "COPY is not supported");
            } else {
                result = Result(raw);
            }
        }
        if (done) {
            break;
        }
        const auto outcome = co_await wait_socket(socket_, Descriptor::wait_read, deadline);
        if (outcome == WaitOutcome::deadline) {
            // The statement may still be running; the connection's state is unknown, so it is not reused.
            broken_ = true;
            throw DbError(DbError::Kind::timeout, "statement timed out");
        }
        if (outcome == WaitOutcome::failed) {
            fail_from_connection("socket wait failed");
        }
    }
    if (PQstatus(connection_) == CONNECTION_BAD) {
        broken_ = true;
    }
    if (error) {
        throw *error;
    }
    co_return result;
}

void Connection::observe(std::string_view query_name, std::string_view outcome, Clock::duration elapsed) {
    if (instruments_ && instruments_->query_duration != nullptr) {
        instruments_->query_duration->with({instruments_->pool_name, query_name, outcome})
            .observe(std::chrono::duration<double>(elapsed).count());
    }
}

asio::awaitable<Result> Connection::query(std::string_view query_name, std::string_view sql, Params params,
                                          const trace::SpanContext* parent) {
    const auto timeout = instruments_ ? instruments_->query_timeout : kStandaloneQueryTimeout;
    co_return co_await query(query_name, sql, std::move(params), parent, timeout);
}

asio::awaitable<Result> Connection::query(std::string_view query_name, std::string_view sql, Params params,
                                          const trace::SpanContext* parent, std::chrono::milliseconds timeout) {
    const auto start = Clock::now();
    std::optional<trace::Span> span;
    if (parent != nullptr && instruments_ && instruments_->tracer != nullptr) {
        span.emplace(instruments_->tracer->start_span(std::string(query_name), trace::SpanKind::client, parent));
        if (span->recording()) {
            span->set_attribute("db.system", std::string("postgresql"));
            span->set_attribute("db.name", std::string(database()));
            span->set_attribute("db.operation", operation_of(sql));
        }
    }
    try {
        Result result = co_await run(sql, params, start + timeout);
        observe(query_name, "ok", Clock::now() - start);
        co_return result;
    } catch (const DbError& e) {
        const bool timed_out = e.kind() == DbError::Kind::timeout;
        observe(query_name, timed_out ? "timeout" : "error", Clock::now() - start);
        if (span) {
            span->set_error(e.what());
        }
        if (timed_out) {
            log::warn("database statement timed out",
                      {{"db.query", query_name},
                       {"db.pool", instruments_ ? std::string_view(instruments_->pool_name) : "none"},
                       {"event.duration", std::chrono::nanoseconds(Clock::now() - start).count()}});
        }
        throw;
    }
}

asio::awaitable<void> Connection::rollback_quietly() {
    if (broken_ || !in_transaction()) {
        co_return;
    }
    try {
        co_await query("rollback", "ROLLBACK");
    } catch (const DbError&) {
        // The original failure matters more; a connection that cannot roll back is broken and will be discarded.
        broken_ = true;
    }
}

}  // namespace vigie::db
