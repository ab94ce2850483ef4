#include "kit/http/upstream.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>
#include <nlohmann/json.hpp>

#include "kit/http/problem.hpp"
#include "kit/http/server.hpp"

namespace vigie::http {
namespace {

namespace asio = boost::asio;
using std::chrono::milliseconds;
using std::chrono::seconds;

const Clock::time_point kStart{seconds(1000)};

// ----------------------------------------------------------------------------------------------------------------
// CircuitBreaker

TEST(CircuitBreaker, OpensAfterConsecutiveFailuresOnly) {
    CircuitBreaker breaker({.failure_threshold = 3, .open_duration = seconds(1), .max_open_duration = seconds(8)});
    breaker.record_failure(kStart);
    breaker.record_failure(kStart);
    breaker.record_success();  // not consecutive any more
    breaker.record_failure(kStart);
    breaker.record_failure(kStart);
    EXPECT_EQ(breaker.state(), CircuitBreaker::State::closed);
    EXPECT_TRUE(breaker.acquire(kStart));
    breaker.record_failure(kStart);
    EXPECT_EQ(breaker.state(), CircuitBreaker::State::open);
    EXPECT_FALSE(breaker.available(kStart + milliseconds(999)));
    EXPECT_FALSE(breaker.acquire(kStart + milliseconds(999)));
}

TEST(CircuitBreaker, HalfOpenAdmitsOneProbeAndItsSuccessCloses) {
    CircuitBreaker breaker({.failure_threshold = 1, .open_duration = seconds(1), .max_open_duration = seconds(8)});
    breaker.record_failure(kStart);
    auto later = kStart + seconds(1);
    EXPECT_TRUE(breaker.available(later));
    EXPECT_TRUE(breaker.acquire(later));
    EXPECT_EQ(breaker.state(), CircuitBreaker::State::half_open);
    EXPECT_FALSE(breaker.available(later));
    EXPECT_FALSE(breaker.acquire(later));  // only one probe at a time
    breaker.record_success();
    EXPECT_EQ(breaker.state(), CircuitBreaker::State::closed);
    EXPECT_TRUE(breaker.acquire(later));
    EXPECT_TRUE(breaker.acquire(later));
}

TEST(CircuitBreaker, FailedProbesDoubleTheWaitUpToTheMaximum) {
    CircuitBreaker breaker({.failure_threshold = 1, .open_duration = seconds(1), .max_open_duration = seconds(3)});
    auto now = kStart;
    breaker.record_failure(now);
    std::vector<seconds> waits;
    for (int round = 0; round < 3; ++round) {
        auto wait = seconds(0);
        while (!breaker.available(now + wait)) {
            wait += seconds(1);
        }
        waits.push_back(wait);
        now += wait;
        ASSERT_TRUE(breaker.acquire(now));
        breaker.record_failure(now);
    }
    EXPECT_EQ(waits, (std::vector<seconds>{seconds(1), seconds(2), seconds(3)}));
    breaker.reset();
    EXPECT_TRUE(breaker.acquire(now));
    EXPECT_EQ(breaker.state(), CircuitBreaker::State::closed);
}

TEST(CircuitBreaker, LateSuccessDoesNotCloseAnOpenCircuit) {
    CircuitBreaker breaker({.failure_threshold = 1, .open_duration = seconds(1), .max_open_duration = seconds(1)});
    breaker.record_failure(kStart);
    breaker.record_success();  // a request that left before the circuit opened
    EXPECT_EQ(breaker.state(), CircuitBreaker::State::open);
}

// ----------------------------------------------------------------------------------------------------------------
// RetryBudget

TEST(RetryBudget, AllowsTheFloorThenTheRatio) {
    RetryBudget budget({.ratio = 0.2, .min_retries = 2, .window = seconds(10)});
    budget.record_request(kStart);
    EXPECT_TRUE(budget.try_retry(kStart));
    EXPECT_TRUE(budget.try_retry(kStart));
    EXPECT_FALSE(budget.try_retry(kStart));  // floor of 2 spent, 20 % of 1 request is less
    for (int i = 0; i < 99; ++i) {
        budget.record_request(kStart);
    }
    int granted = 0;
    while (budget.try_retry(kStart)) {
        ++granted;
    }
    EXPECT_EQ(granted + 2, 20);  // 20 % of 100 requests
}

TEST(RetryBudget, ForgetsRequestsAndRetriesOutsideTheWindow) {
    RetryBudget budget({.ratio = 0.0, .min_retries = 1, .window = seconds(10)});
    EXPECT_TRUE(budget.try_retry(kStart));
    EXPECT_FALSE(budget.try_retry(kStart + seconds(5)));
    EXPECT_TRUE(budget.try_retry(kStart + seconds(11)));
}

TEST(ParseEndpointList, AcceptsCommaSeparatedUrls) {
    auto list = parse_endpoint_list("http://127.0.0.1:8081, http://localhost:9000");
    ASSERT_TRUE(list);
    ASSERT_EQ(list->size(), 2u);
    EXPECT_EQ((*list)[1].host, "localhost");
    EXPECT_EQ((*list)[1].port, 9000);
    EXPECT_FALSE(parse_endpoint_list(""));
    EXPECT_FALSE(parse_endpoint_list("http://127.0.0.1:8081,"));
    EXPECT_FALSE(parse_endpoint_list("http://127.0.0.1:8081,https://x:1"));
}

// ----------------------------------------------------------------------------------------------------------------
// UpstreamGroup against real servers on ephemeral ports

template <class T>
T run(asio::io_context& io, asio::awaitable<T> task) {
    std::optional<T> result;
    std::exception_ptr error;
    bool done = false;
    asio::co_spawn(io, std::move(task), [&](const std::exception_ptr& e, T value) {
        error = e;
        if (!e) {
            result.emplace(std::move(value));
        }
        done = true;
    });
    while (!done) {
        io.run_one();
    }
    if (error) {
        std::rethrow_exception(error);
    }
    return std::move(*result);
}

/// A replica: answers GET/POST /who with its name, GET /readyz with 200 or 503, and can be made slow or failing.
struct Replica {
    Replica(asio::io_context& io, std::string name) : name(std::move(name)) {
        auto who = [this, &io](RequestContext&) -> asio::awaitable<Response> {
            ++hits;
            if (delay.count() > 0) {
                asio::steady_timer timer(io, delay);
                co_await timer.async_wait(asio::use_awaitable);
            }
            if (fail_status != 0) {
                co_return problem(static_cast<Status>(fail_status), "failing on purpose");
            }
            co_return json_response(Status::ok, {{"name", this->name}});
        };
        router.add(Verb::get, "/who", who);
        router.add(Verb::post, "/who", who);
        router.add(Verb::get, "/readyz", [this](RequestContext&) -> asio::awaitable<Response> {
            ++probes;
            if (ready) {
                co_return json_response(Status::ok, {{"status", "ready"}});
            }
            co_return problem(Status::service_unavailable, "draining");
        });
        server =
            std::make_unique<Server>(io, ServerOptions{}, router, ServerObservability{"fake", nullptr, false, false});
        server->start();
        port = server->port();
    }

    /// Like a crash: the listener and every connection close.
    void kill() { server.reset(); }

    std::string name;
    Router router;
    std::unique_ptr<Server> server;
    std::uint16_t port = 0;
    int hits = 0;
    int probes = 0;
    bool ready = true;
    unsigned fail_status = 0;
    milliseconds delay{0};
};

class UpstreamGroupTest : public ::testing::Test {
  protected:
    UpstreamOptions options(bool probed) {
        UpstreamOptions o;
        o.service = "test";
        o.name = "fake";
        for (auto* replica : {&a_, &b_}) {
            Endpoint endpoint{"127.0.0.1", replica->port};
            o.instances.push_back({endpoint, probed ? std::optional<Endpoint>(endpoint) : std::nullopt});
        }
        o.health_interval = milliseconds(30);
        o.health_timeout = milliseconds(200);
        o.breaker = {.failure_threshold = 3, .open_duration = milliseconds(200), .max_open_duration = seconds(1)};
        o.retry_budget = {.ratio = 0.2, .min_retries = 100, .window = seconds(10)};
        o.backoff_base = milliseconds(1);
        o.backoff_max = milliseconds(5);
        return o;
    }

    CallOptions call(bool retryable, milliseconds timeout = milliseconds(2000), milliseconds try_timeout = {}) {
        return {Clock::now() + timeout, try_timeout, retryable};
    }

    Response send(UpstreamGroup& group, Verb verb, CallOptions call_options) {
        Request request{verb, "/who", 11};
        return run(io_, group.send(std::move(request), call_options));
    }

    std::string who(const Response& response) { return nlohmann::json::parse(response.body()).at("name"); }

    /// Runs the io_context until `condition` holds or two seconds pass.
    bool wait_until(const std::function<bool()>& condition) {
        auto deadline = Clock::now() + seconds(2);
        while (!condition() && Clock::now() < deadline) {
            io_.run_for(milliseconds(5));
        }
        return condition();
    }

    asio::io_context io_;
    Replica a_{io_, "a"};
    Replica b_{io_, "b"};
};

TEST_F(UpstreamGroupTest, SpreadsRequestsOverHealthyReplicas) {
    UpstreamGroup group(io_.get_executor(), options(true));
    EXPECT_EQ(group.healthy_count(), 0u);  // not probed yet
    group.start();
    ASSERT_TRUE(wait_until([&] { return group.healthy_count() == 2; }));
    std::map<std::string, int> seen;
    for (int i = 0; i < 20; ++i) {
        auto response = send(group, Verb::get, call(true));
        ASSERT_EQ(response.result_int(), 200);
        ++seen[who(response)];
    }
    EXPECT_EQ(seen["a"], 10);
    EXPECT_EQ(seen["b"], 10);
}

TEST_F(UpstreamGroupTest, ReplicaFailingReadinessGetsNoNewRequests) {
    UpstreamGroup group(io_.get_executor(), options(true));
    group.start();
    ASSERT_TRUE(wait_until([&] { return group.healthy_count() == 2; }));
    a_.ready = false;
    ASSERT_TRUE(wait_until([&] { return group.healthy_count() == 1; }));
    auto hits_before = a_.hits;
    for (int i = 0; i < 10; ++i) {
        EXPECT_EQ(who(send(group, Verb::post, call(false))), "b");
    }
    EXPECT_EQ(a_.hits, hits_before);
    a_.ready = true;
    ASSERT_TRUE(wait_until([&] { return group.healthy_count() == 2; }));
    std::map<std::string, int> seen;
    for (int i = 0; i < 10; ++i) {
        ++seen[who(send(group, Verb::get, call(true)))];
    }
    EXPECT_GT(seen["a"], 0);
}

TEST_F(UpstreamGroupTest, RefusedConnectionIsRetriedElsewhereEvenForPost) {
    UpstreamGroup group(io_.get_executor(), options(true));
    group.start();
    ASSERT_TRUE(wait_until([&] { return group.healthy_count() == 2; }));
    a_.kill();
    // Until a probe notices, requests meet the refused port; none may fail, not even non-idempotent ones.
    for (int i = 0; i < 10; ++i) {
        auto response = send(group, Verb::post, call(false));
        ASSERT_EQ(response.result_int(), 200);
        EXPECT_EQ(who(response), "b");
    }
    EXPECT_EQ(group.healthy_count(), 1u);
}

TEST_F(UpstreamGroupTest, KilledReplicaWithPooledConnectionsDoesNotFailGets) {
    UpstreamGroup group(io_.get_executor(), options(true));
    group.start();
    ASSERT_TRUE(wait_until([&] { return group.healthy_count() == 2; }));
    for (int i = 0; i < 4; ++i) {
        send(group, Verb::get, call(true));  // leaves idle keep-alive connections to both
    }
    a_.kill();
    for (int i = 0; i < 10; ++i) {
        ASSERT_EQ(send(group, Verb::get, call(true)).result_int(), 200) << "request " << i;
    }
}

TEST_F(UpstreamGroupTest, KilledReplicaWithPooledConnectionsDoesNotFailPosts) {
    UpstreamGroup group(io_.get_executor(), options(true));
    group.start();
    ASSERT_TRUE(wait_until([&] { return group.healthy_count() == 2; }));
    for (int i = 0; i < 4; ++i) {
        send(group, Verb::post, call(false));
    }
    a_.kill();
    // The pooled connections to a are closed: they are dropped before use, the fresh connection is refused, and
    // a refused request never left, so even a non-idempotent one goes to b.
    for (int i = 0; i < 10; ++i) {
        ASSERT_EQ(send(group, Verb::post, call(false)).result_int(), 200) << "request " << i;
    }
}

TEST_F(UpstreamGroupTest, RetryableRequestMovesToAnotherReplicaAfter503) {
    auto o = options(false);
    o.breaker.failure_threshold = 100;  // keep a in rotation: this test is about retries, not the breaker
    UpstreamGroup group(io_.get_executor(), o);
    a_.fail_status = 503;
    for (int i = 0; i < 4; ++i) {
        auto response = send(group, Verb::get, call(true));
        ASSERT_EQ(response.result_int(), 200);
        EXPECT_EQ(who(response), "b");
    }
    // Not retryable: the 503 is the answer.
    int answered_503 = 0;
    for (int i = 0; i < 4; ++i) {
        answered_503 += send(group, Verb::post, call(false)).result_int() == 503 ? 1 : 0;
    }
    EXPECT_GT(answered_503, 0);
}

TEST_F(UpstreamGroupTest, SlowAttemptIsAbandonedAndRetriedWithinTheDeadline) {
    auto o = options(false);
    o.breaker.failure_threshold = 100;
    UpstreamGroup group(io_.get_executor(), o);
    a_.delay = milliseconds(1000);
    for (int i = 0; i < 3; ++i) {
        auto start = Clock::now();
        auto response = send(group, Verb::get, call(true, milliseconds(900), milliseconds(100)));
        EXPECT_EQ(response.result_int(), 200);
        EXPECT_LT(Clock::now() - start, milliseconds(600));
    }
    // A POST is not resent once it may have arrived: the timeout is the answer.
    bool timed_out = false;
    for (int i = 0; i < 2 && !timed_out; ++i) {
        try {
            send(group, Verb::post, call(false, milliseconds(150)));
        } catch (const UpstreamError& e) {
            timed_out = e.kind() == UpstreamError::Kind::timeout;
        }
    }
    EXPECT_TRUE(timed_out);
}

TEST_F(UpstreamGroupTest, BreakerOpensThenRefusesFastThenRecovers) {
    auto o = options(false);
    o.instances.pop_back();  // only replica a
    UpstreamGroup group(io_.get_executor(), o);
    a_.fail_status = 500;
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(send(group, Verb::get, call(false)).result_int(), 500);
    }
    EXPECT_EQ(group.status()[0].breaker, CircuitBreaker::State::open);
    auto hits = a_.hits;
    auto start = Clock::now();
    try {
        send(group, Verb::get, call(false));
        ADD_FAILURE() << "expected the open circuit to refuse";
    } catch (const UpstreamError& e) {
        EXPECT_EQ(e.kind(), UpstreamError::Kind::unavailable);
    }
    EXPECT_LT(Clock::now() - start, milliseconds(50));
    EXPECT_EQ(a_.hits, hits);

    a_.fail_status = 0;
    io_.run_for(milliseconds(250));                                    // open_duration
    EXPECT_EQ(send(group, Verb::get, call(false)).result_int(), 200);  // the half-open probe
    EXPECT_EQ(group.status()[0].breaker, CircuitBreaker::State::closed);
}

TEST_F(UpstreamGroupTest, NoHealthyReplicaMeansUnavailable) {
    UpstreamGroup group(io_.get_executor(), options(true));
    a_.ready = false;
    b_.ready = false;
    group.start();
    ASSERT_TRUE(wait_until([&] { return a_.probes > 0 && b_.probes > 0; }));
    try {
        send(group, Verb::get, call(true));
        ADD_FAILURE() << "expected UpstreamError";
    } catch (const UpstreamError& e) {
        EXPECT_EQ(e.kind(), UpstreamError::Kind::unavailable);
    }
    EXPECT_EQ(a_.hits + b_.hits, 0);
}

TEST_F(UpstreamGroupTest, SpentRetryBudgetStopsRetries) {
    auto o = options(false);
    o.retry_budget = {.ratio = 0.0, .min_retries = 1, .window = seconds(10)};
    UpstreamGroup group(io_.get_executor(), o);
    a_.fail_status = 503;
    b_.fail_status = 503;
    send(group, Verb::get, call(true));  // first attempt plus the single retry the budget allows
    EXPECT_EQ(a_.hits + b_.hits, 2);
    send(group, Verb::get, call(true));
    EXPECT_EQ(a_.hits + b_.hits, 3);  // no retry left
}

}  // namespace
}  // namespace vigie::http
