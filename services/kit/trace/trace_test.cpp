#include "kit/trace/trace.hpp"

#include <gtest/gtest.h>

#include <set>
#include <stdexcept>
#include <string>

namespace vigie::trace {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kTraceId = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr std::string_view kSpanId = "00f067aa0ba902b7";
// Nothing listens on the discard port; these tests never let the exporter reach it anyway.
constexpr std::string_view kUnusedEndpoint = "http://127.0.0.1:9/v1/traces";

double dropped(metrics::Registry& registry, std::string_view reason) {
    return registry.counter("otel_spans_dropped_total", "", {"reason"}).with({reason}).value();
}

TEST(Traceparent, ParsesAValidHeader) {
    const auto context = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    ASSERT_TRUE(context.has_value());
    EXPECT_EQ(context->trace_id_hex(), kTraceId);
    EXPECT_EQ(context->span_id_hex(), kSpanId);
    EXPECT_TRUE(context->sampled);
    EXPECT_EQ(context->trace_id[0], 0x4b);
    EXPECT_EQ(context->span_id[7], 0xb7);
    EXPECT_TRUE(context->valid());
}

TEST(Traceparent, SampledIsTheLowestFlagBit) {
    EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")->sampled);
    EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02")->sampled);
    EXPECT_TRUE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")->sampled);
}

TEST(Traceparent, FormatRoundTrips) {
    const std::string header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    EXPECT_EQ(format_traceparent(parse_traceparent(header).value()), header);
    SpanContext unsampled = parse_traceparent(header).value();
    unsampled.sampled = false;
    EXPECT_EQ(format_traceparent(unsampled), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
}

TEST(Traceparent, RejectsUppercaseHex) {
    EXPECT_FALSE(parse_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
    EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"));
    EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A"));
}

TEST(Traceparent, RejectsAllZeroIds) {
    EXPECT_FALSE(parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
    EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
}

TEST(Traceparent, RejectsWrongLengthsAndSeparators) {
    EXPECT_FALSE(parse_traceparent(""));
    EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"));    // short trace id
    EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01"));  // long trace id
    EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01"));    // short span id
    EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"));    // short flags
    EXPECT_FALSE(parse_traceparent("0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));    // short version
    EXPECT_FALSE(parse_traceparent("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01"));
    EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01"));  // not hex
}

TEST(Traceparent, RejectsVersionFf) {
    EXPECT_FALSE(parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
}

TEST(Traceparent, ExtraFieldsOnlyForFutureVersions) {
    EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"))
        << "version 00 has exactly four fields";
    EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-010"));
    const auto future = parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever");
    ASSERT_TRUE(future.has_value()) << "a higher version is read through its first four fields";
    EXPECT_EQ(future->trace_id_hex(), kTraceId);
    EXPECT_TRUE(parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    EXPECT_FALSE(parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"))
        << "extra content must follow a '-'";
}

TEST(Traceparent, IgnoresSurroundingWhitespaceOnly) {
    EXPECT_TRUE(parse_traceparent(" \t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 "));
    EXPECT_FALSE(parse_traceparent("00 -4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
}

TEST(Tracer, RootSpansGetFreshValidIds) {
    Tracer tracer(TracerOptions{.service_name = "user"});
    std::set<std::string> trace_ids;
    for (int i = 0; i < 100; ++i) {
        const Span span = tracer.start_span("op", SpanKind::internal, nullptr);
        ASSERT_TRUE(span.context().valid());
        trace_ids.insert(span.context().trace_id_hex());
    }
    EXPECT_EQ(trace_ids.size(), 100u);
}

TEST(Tracer, ChildKeepsTraceIdAndSampledFlagWithANewSpanId) {
    Tracer tracer(TracerOptions{.service_name = "order"});
    const SpanContext remote = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").value();
    const Span server = tracer.start_span("GET /orders/{id}", SpanKind::server, &remote);
    EXPECT_EQ(server.context().trace_id_hex(), kTraceId);
    EXPECT_NE(server.context().span_id_hex(), kSpanId);
    EXPECT_TRUE(server.context().sampled);
    const Span client = tracer.start_span("GET user", SpanKind::client, &server.context());
    EXPECT_EQ(client.context().trace_id, server.context().trace_id);
    EXPECT_NE(client.context().span_id, server.context().span_id);

    SpanContext unsampled = remote;
    unsampled.sampled = false;
    EXPECT_FALSE(tracer.start_span("x", SpanKind::server, &unsampled).context().sampled)
        << "an unsampled parent is respected even at ratio 1";
}

TEST(Tracer, InvalidParentStartsANewTrace) {
    Tracer tracer(TracerOptions{.service_name = "user"});
    const SpanContext zero{};
    const Span span = tracer.start_span("x", SpanKind::server, &zero);
    EXPECT_TRUE(span.context().valid());
}

TEST(Tracer, SamplingFollowsTheRatio) {
    Tracer never(TracerOptions{.service_name = "s", .sample_ratio = 0.0});
    Tracer always(TracerOptions{.service_name = "s", .sample_ratio = 1.0});
    Tracer half(TracerOptions{.service_name = "s", .sample_ratio = 0.5});
    int sampled = 0;
    constexpr int kSpans = 10'000;
    for (int i = 0; i < kSpans; ++i) {
        EXPECT_FALSE(never.start_span("x", SpanKind::server, nullptr).context().sampled);
        EXPECT_TRUE(always.start_span("x", SpanKind::server, nullptr).context().sampled);
        sampled += half.start_span("x", SpanKind::server, nullptr).context().sampled ? 1 : 0;
    }
    // Binomial(10000, 0.5): the standard deviation is 50, so +-600 is 12 sigma.
    EXPECT_GT(sampled, kSpans / 2 - 600);
    EXPECT_LT(sampled, kSpans / 2 + 600);

    const SpanContext parent = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").value();
    EXPECT_TRUE(never.start_span("x", SpanKind::server, &parent).context().sampled)
        << "a sampled parent wins over the local ratio";
}

TEST(Tracer, ExportDisabledRecordsNothing) {
    Tracer tracer(TracerOptions{.service_name = "user"});
    Span span = tracer.start_span("x", SpanKind::server, nullptr);
    EXPECT_TRUE(span.context().sampled);
    EXPECT_FALSE(span.recording());
    span.set_attribute("ignored", 1);
    span.end();
}

TEST(Tracer, RejectsBadOptions) {
    EXPECT_THROW(Tracer(TracerOptions{.service_name = "s", .otlp_endpoint = "https://collector:4318/v1/traces"}),
                 std::invalid_argument);
    EXPECT_THROW(Tracer(TracerOptions{.service_name = "s", .otlp_endpoint = "collector:4318"}), std::invalid_argument);
    EXPECT_THROW(Tracer(TracerOptions{.service_name = "s", .max_batch = 0}), std::invalid_argument);
    EXPECT_THROW(Tracer(TracerOptions{.service_name = "s", .flush_interval = 0ms}), std::invalid_argument)
        << "a zero interval would spin the export thread";
}

TEST(Tracer, FullQueueDropsAndCountsWithoutBlocking) {
    metrics::Registry registry;
    // The exporter thread sleeps for an hour and max_batch is never reached: nothing leaves the queue.
    Tracer tracer(TracerOptions{.service_name = "user",
                                .otlp_endpoint = std::string(kUnusedEndpoint),
                                .queue_capacity = 2,
                                .max_batch = 100,
                                .flush_interval = 1h},
                  registry);
    for (int i = 0; i < 5; ++i) {
        Span span = tracer.start_span("op", SpanKind::internal, nullptr);
        ASSERT_TRUE(span.recording());
        span.set_attribute("i", i);
    }
    EXPECT_EQ(dropped(registry, "queue_full"), 3);
    tracer.shutdown(0ms);  // no time to export: the two queued spans are dropped as such
    EXPECT_EQ(dropped(registry, "shutdown"), 2);
    EXPECT_EQ(dropped(registry, "queue_full"), 3);
    tracer.start_span("late", SpanKind::internal, nullptr).end();
    EXPECT_EQ(dropped(registry, "shutdown"), 3) << "spans ending after shutdown are counted too";
}

TEST(Span, MovedFromSpanEndsNothingAndEndIsIdempotent) {
    metrics::Registry registry;
    Tracer tracer(TracerOptions{.service_name = "user",
                                .otlp_endpoint = std::string(kUnusedEndpoint),
                                .queue_capacity = 10,
                                .flush_interval = 1h},
                  registry);
    {
        Span first = tracer.start_span("a", SpanKind::internal, nullptr);
        Span second = std::move(first);
        EXPECT_FALSE(first.recording());  // NOLINT(bugprone-use-after-move): checking the moved-from state
        first.end();
        second.end();
        second.end();
        second.set_attribute("after end", true);
        Span third = tracer.start_span("b", SpanKind::internal, nullptr);
        third = tracer.start_span("c", SpanKind::internal, nullptr);  // assignment ends "b"
    }
    tracer.shutdown(0ms);
    EXPECT_EQ(dropped(registry, "shutdown"), 3) << "a, b and c, each queued exactly once";
}

}  // namespace
}  // namespace vigie::trace
