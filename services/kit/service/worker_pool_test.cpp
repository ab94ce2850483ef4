#include "kit/service/worker_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <future>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

namespace vigie::service {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

/// Runs `io` until `future` is ready (at most a few seconds).
template <class T>
T wait(asio::io_context& io, std::future<T>& future) {
    auto until = std::chrono::steady_clock::now() + 5s;
    while (future.wait_for(0s) != std::future_status::ready && std::chrono::steady_clock::now() < until) {
        io.restart();
        io.run_one_for(10ms);
    }
    return future.get();
}

asio::awaitable<std::string> describe_thread(WorkerPool& pool) {
    std::function<std::string()> work = [] {
        std::ostringstream id;
        id << std::this_thread::get_id();
        return id.str();
    };
    co_return co_await pool.run(std::move(work));
}

TEST(WorkerPool, ReturnsTheResultOnTheCallersExecutor) {
    asio::io_context io;
    WorkerPool pool(2, 8);
    std::function<int()> work = [] { return 6 * 7; };
    auto answer = asio::co_spawn(io, pool.run(std::move(work)), asio::use_future);
    EXPECT_EQ(wait(io, answer), 42);

    // The work ran on a pool thread, not on the thread running the io_context.
    auto worker = asio::co_spawn(io, describe_thread(pool), asio::use_future);
    std::ostringstream here;
    here << std::this_thread::get_id();
    EXPECT_NE(wait(io, worker), here.str());
}

TEST(WorkerPool, PropagatesExceptions) {
    asio::io_context io;
    WorkerPool pool(1, 8);
    std::function<std::string()> work = []() -> std::string { throw std::invalid_argument("bad input"); };
    auto result = asio::co_spawn(io, pool.run(std::move(work)), asio::use_future);
    EXPECT_THROW(wait(io, result), std::invalid_argument);
    // The pool is still usable and the failed job no longer counts as pending.
    std::function<int()> next = [] { return 1; };
    auto again = asio::co_spawn(io, pool.run(std::move(next)), asio::use_future);
    EXPECT_EQ(wait(io, again), 1);
}

TEST(WorkerPool, RefusesWorkBeyondMaxPendingWith503) {
    asio::io_context io;
    WorkerPool pool(1, 2);
    std::promise<void> release;
    auto released = release.get_future().share();
    std::atomic<int> started{0};
    auto blocking = [&] {
        std::function<int()> work = [released, &started] {
            ++started;
            released.wait();
            return 1;
        };
        return asio::co_spawn(io, pool.run(std::move(work)), asio::use_future);
    };
    auto first = blocking();
    auto second = blocking();  // queued behind the first on the single thread
    io.restart();
    io.poll();
    auto third = blocking();
    io.restart();
    io.poll();
    // Not ASSERT: the blocked jobs must be released whatever happens, or the pool's destructor would wait forever.
    if (third.wait_for(0s) != std::future_status::ready) {
        ADD_FAILURE() << "a third job was queued with max_pending = 2";
    } else {
        try {
            third.get();
            ADD_FAILURE() << "a third job was accepted with max_pending = 2";
        } catch (const http::ProblemError& e) {
            EXPECT_EQ(e.status(), http::Status::service_unavailable);
        }
    }
    release.set_value();
    EXPECT_EQ(wait(io, first), 1);
    EXPECT_EQ(wait(io, second), 1);
    EXPECT_EQ(started, 2);
    // Capacity is back once the jobs finished.
    std::function<int()> work = [] { return 3; };
    auto fourth = asio::co_spawn(io, pool.run(std::move(work)), asio::use_future);
    EXPECT_EQ(wait(io, fourth), 3);
}

}  // namespace
}  // namespace vigie::service
