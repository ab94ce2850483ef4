// libFuzzer target: bytes from a client, read the way the server reads them (Beast's request parser with the
// server's limits, arriving in pieces, several requests on one connection), then everything the server and a handler
// do with a parsed request before business logic: path split, routing, query parameters, traceparent, JSON body.
// Any failure other than a refusal (a parser error or a ProblemError) is a bug.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "kit/http/json_body.hpp"
#include "kit/http/problem.hpp"
#include "kit/http/query.hpp"
#include "kit/http/router.hpp"
#include "kit/trace/trace.hpp"

namespace {

namespace beast_http = boost::beast::http;
using vigie::http::Verb;

constexpr std::size_t kMaxHeaderBytes = 8 * 1024;  // ServerOptions defaults
constexpr std::size_t kMaxBodyBytes = 64 * 1024;

const vigie::http::Router& router() {
    static const vigie::http::Router instance = [] {
        vigie::http::Router routes;
        const vigie::http::Handler none;  // never called: only matching is fuzzed
        routes.add(Verb::get, "/api/v1/users", none);
        routes.add(Verb::post, "/api/v1/users", none);
        routes.add(Verb::get, "/api/v1/users/{id}", none);
        routes.add(Verb::patch, "/api/v1/users/{id}", none);
        routes.add(Verb::get, "/api/v1/users/{id}/orders", none);
        routes.add(Verb::post, "/api/v1/orders/{id}/status", none);
        routes.add(Verb::get, "/healthz", none);
        return routes;
    }();
    return instance;
}

void check(bool condition) {
    if (!condition) {
        std::abort();
    }
}

/// What the server and a handler do with one parsed request.
void handle(const vigie::http::Request& request) {
    auto target = request.target();
    auto question = target.find('?');
    auto path = target.substr(0, question);
    auto query = question == std::string_view::npos ? std::string_view() : target.substr(question + 1);

    std::vector<std::string_view> segments;
    bool plain = vigie::http::split_path(path, segments);
    vigie::http::PathParams params;
    auto match = router().match(request.method(), path, params);
    if (match.kind == vigie::http::RouteMatch::Kind::found) {
        check(plain && match.route != nullptr && match.route->method == request.method());
        for (auto segment : segments) {
            check(!segment.empty() && segment != "." && segment != "..");
        }
    } else {
        check(match.route == nullptr);
    }
    if (match.kind == vigie::http::RouteMatch::Kind::method_not_allowed) {
        check(!match.allow.empty());
    }

    try {
        vigie::http::QueryParams params_of_query(query, {"limit", "cursor", "status", "user_id"});
        auto limit = params_of_query.integer("limit", 20, 1, 100);
        check(limit >= 1 && limit <= 100);
    } catch (const vigie::http::ProblemError& e) {
        check(e.status() == vigie::http::Status::bad_request);
    }

    if (auto parent = vigie::trace::parse_traceparent(request["traceparent"])) {
        check(parent->valid());
        // A parsed traceparent survives a round trip (version 00 is what we send onwards).
        auto again = vigie::trace::parse_traceparent(vigie::trace::format_traceparent(*parent));
        check(again && again->trace_id == parent->trace_id && again->span_id == parent->span_id);
    }

    if (!request.body().empty()) {
        try {
            auto body = vigie::http::parse_json_object(request);
            check(body.is_object());
        } catch (const vigie::http::ProblemError& e) {
            check(e.status() == vigie::http::Status::bad_request ||
                  e.status() == vigie::http::Status::unsupported_media_type);
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    // The first byte says how the bytes arrive: in pieces of 1 to 256 bytes, as reads from a socket would.
    const std::size_t piece = static_cast<std::size_t>(data[0]) + 1;
    std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

    std::string pending;  // received but not yet consumed by the parser, like the server's flat_buffer
    for (int message = 0; message < 16; ++message) {  // keep-alive: requests follow each other on one connection
        beast_http::request_parser<beast_http::string_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(kMaxHeaderBytes));
        parser.body_limit(kMaxBodyBytes);
        parser.eager(true);
        boost::beast::error_code ec;
        while (!parser.is_done()) {
            if (!pending.empty()) {
                auto used = parser.put(boost::asio::buffer(pending), ec);
                pending.erase(0, used);
                if (ec && ec != beast_http::error::need_more) {
                    return 0;  // the server answers 4xx and closes the connection
                }
                if (!ec && used > 0) {
                    continue;
                }
                ec = {};
            }
            if (input.empty()) {
                parser.put_eof(ec);  // the client closed the connection
                if (ec || !parser.is_done()) {
                    return 0;
                }
                break;
            }
            auto n = std::min(piece, input.size());
            pending.append(input.substr(0, n));
            input.remove_prefix(n);
        }
        const auto& request = parser.get();
        check(request.body().size() <= kMaxBodyBytes);
        handle(request);
        if (!request.keep_alive() || (pending.empty() && input.empty())) {
            return 0;
        }
    }
    return 0;
}
