#pragma once

#include <atomic>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstddef>
#include <exception>
#include <functional>

#include "kit/http/problem.hpp"

namespace vigie::service {

/// Threads for CPU-heavy work (password hashing) so the event loop never stalls. Bounded: when `max_pending` jobs
/// are already queued or running, new work is refused with 503 instead of queueing without limit.
class WorkerPool {
  public:
    WorkerPool(std::size_t threads, std::size_t max_pending) : pool_(threads), max_pending_(max_pending) {}
    ~WorkerPool() { pool_.join(); }

    /// Runs `work()` on a worker thread; the caller resumes on its own executor with the result (or the exception).
    /// Takes a std::function rather than a closure type: GCC 12 destroys closure-typed coroutine parameters twice.
    template <class Result>
    boost::asio::awaitable<Result> run(std::function<Result()> work) {
        if (pending_.fetch_add(1) >= max_pending_) {
            pending_.fetch_sub(1);
            throw http::ProblemError(http::Status::service_unavailable, "too many requests are being processed");
        }
        struct Release {
            std::atomic<std::size_t>& pending;
            ~Release() { pending.fetch_sub(1); }
        } release{pending_};
        co_return co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>,
                                                       void(std::exception_ptr, Result)>(
            [this](auto handler, std::function<Result()> job) {
                auto caller = boost::asio::get_associated_executor(handler);
                boost::asio::post(pool_, [handler = std::move(handler), job = std::move(job), caller]() mutable {
                    std::exception_ptr error;
                    Result value{};
                    try {
                        value = job();
                    } catch (...) {
                        error = std::current_exception();
                    }
                    boost::asio::post(caller,
                                      [handler = std::move(handler), error, value = std::move(value)]() mutable {
                                          std::move(handler)(error, std::move(value));
                                      });
                });
            },
            boost::asio::use_awaitable, std::move(work));
    }

  private:
    boost::asio::thread_pool pool_;
    std::size_t max_pending_;
    std::atomic<std::size_t> pending_{0};
};

}  // namespace vigie::service
