#pragma once

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstddef>
#include <type_traits>

#include "kit/http/problem.hpp"

namespace vigie::service {

/// Threads for CPU-heavy work (password hashing) so the event loop never stalls. Bounded: when `max_pending` jobs
/// are already queued or running, new work is refused with 503 instead of queueing without limit.
class WorkerPool {
public:
    WorkerPool(std::size_t threads, std::size_t max_pending) : pool_(threads), max_pending_(max_pending) {}
    ~WorkerPool() { pool_.join(); }

    /// Runs `work()` on a worker thread and resumes the caller on its own executor with the result.
    template <class Work>
    boost::asio::awaitable<std::invoke_result_t<Work>> run(Work work) {
        if (pending_.fetch_add(1) >= max_pending_) {
            pending_.fetch_sub(1);
            throw http::ProblemError(http::Status::service_unavailable, "too many requests are being processed");
        }
        struct Release {
            std::atomic<std::size_t>& pending;
            ~Release() { pending.fetch_sub(1); }
        } release{pending_};
        co_return co_await boost::asio::co_spawn(
            pool_.get_executor(),
            [work = std::move(work)]() -> boost::asio::awaitable<std::invoke_result_t<Work>> { co_return work(); },
            boost::asio::use_awaitable);
    }

private:
    boost::asio::thread_pool pool_;
    std::size_t max_pending_;
    std::atomic<std::size_t> pending_{0};
};

}  // namespace vigie::service
