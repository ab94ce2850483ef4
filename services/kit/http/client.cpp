#include "kit/http/client.hpp"

#include <poll.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <charconv>
#include <deque>
#include <string>
#include <vector>

#include "kit/http/server.hpp"
#include "kit/metrics/registry.hpp"
#include "kit/trace/trace.hpp"

namespace vigie::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;

bool is_idempotent(Verb method) {
    switch (method) {
        case Verb::get:
        case Verb::head:
        case Verb::options:
        case Verb::put:
        case Verb::delete_:
        case Verb::trace:
            return true;
        default:
            return false;
    }
}

std::optional<Endpoint> parse_http_endpoint(std::string_view url) {
    constexpr std::string_view kScheme = "http://";
    if (url.substr(0, kScheme.size()) != kScheme) {
        return std::nullopt;
    }
    url.remove_prefix(kScheme.size());
    if (!url.empty() && url.back() == '/') {
        url.remove_suffix(1);
    }
    auto colon = url.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || url.find('/') != std::string_view::npos) {
        return std::nullopt;
    }
    auto host = url.substr(0, colon);
    if (host.front() == '[') {
        // An IPv6 literal must be bracketed whole ("[::1]"); anything else around the brackets is not a host.
        if (host.size() < 3 || host.back() != ']') {
            return std::nullopt;
        }
        host = host.substr(1, host.size() - 2);
    } else if (host.find_first_of("[]:@?#") != std::string_view::npos) {
        return std::nullopt;  // an unbracketed IPv6 literal, user info or a query: ambiguous, refuse
    }
    unsigned port = 0;
    auto digits = url.substr(colon + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec != std::errc{} || end != digits.data() + digits.size() || port == 0 || port > 65535 || host.empty()) {
        return std::nullopt;
    }
    return Endpoint{std::string(host), static_cast<std::uint16_t>(port)};
}

namespace {

struct Connection {
    explicit Connection(asio::any_io_executor executor) : stream(executor) {}
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
};

/// False when the peer closed an idle connection (or sent bytes nobody asked for): readable while idle means either.
bool still_open(Connection& connection) {
    if (connection.buffer.size() > 0) {
        return false;
    }
    pollfd descriptor{connection.stream.socket().native_handle(), POLLIN, 0};
    return ::poll(&descriptor, 1, 0) == 0;
}

}  // namespace

class Client::Pool {
  public:
    explicit Pool(asio::any_io_executor executor)
        : executor_(std::move(executor)),
          duration_(metrics::registry().histogram("http_client_request_duration_seconds",
                                                  "Duration of outgoing HTTP requests, by upstream.",
                                                  {"service", "upstream", "method", "status_class"})) {}
    asio::any_io_executor executor_;
    metrics::Family<metrics::Histogram>& duration_;
    std::deque<std::unique_ptr<Connection>> idle_;
    /// The upstream's addresses: the literal itself, or what its name resolved to (compose and Kubernetes give
    /// names). Kept while connections succeed; cleared by a failed connect so the name is looked up again.
    std::vector<tcp::endpoint> addresses_;
};

Client::Client(asio::any_io_executor executor, ClientOptions options, trace::Tracer* tracer)
    : options_(std::move(options)), tracer_(tracer), pool_(std::make_shared<Pool>(std::move(executor))) {}

Client::~Client() = default;

std::size_t Client::idle_connections() const {
    return pool_->idle_.size();
}

asio::awaitable<Response> Client::send(Request request, Clock::time_point deadline, const trace::SpanContext* parent) {
    auto start = Clock::now();
    std::optional<trace::Span> span;
    if (tracer_ != nullptr) {
        std::string name(request.method_string());
        span.emplace(tracer_->start_span(std::move(name), trace::SpanKind::client, parent));
        span->set_attribute("http.request.method", std::string(request.method_string()));
        span->set_attribute("server.address", options_.host);
        span->set_attribute("server.port", static_cast<std::int64_t>(options_.port));
        span->set_attribute("peer.service", options_.upstream);
        span->set_attribute("url.path", std::string(request.target().substr(0, request.target().find('?'))));
        request.set("traceparent", trace::format_traceparent(span->context()));
    } else if (parent != nullptr && parent->valid()) {
        request.set("traceparent", trace::format_traceparent(*parent));
    }
    request.set(beast_http::field::host, options_.host + ":" + std::to_string(options_.port));
    request.keep_alive(true);
    request.prepare_payload();

    // A named function rather than a lambda: GCC 12 mishandles lambdas capturing a coroutine's parameters.
    auto finish = [](Pool& pool, const ClientOptions& options, std::string_view method, Clock::time_point started,
                     std::optional<trace::Span>& call_span, std::string_view klass, const std::string* error) {
        pool.duration_.with({options.service, options.upstream, method, klass})
            .observe(std::chrono::duration<double>(Clock::now() - started).count());
        if (call_span) {
            if (error != nullptr) {
                call_span->set_error(*error);
            }
            call_span->end();
        }
    };
    const std::string method(request.method_string());

    bool safe_to_resend = is_idempotent(request.method()) || request.count("Idempotency-Key") > 0;
    for (int attempt = 0;; ++attempt) {
        auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (remaining.count() <= 0) {
            std::string error = "deadline exceeded before sending to " + options_.upstream;
            finish(*pool_, options_, method, start, span, "error", &error);
            throw ClientError(ClientError::Kind::timeout, error);
        }
        request.set("X-Request-Timeout-Ms", std::to_string(remaining.count()));

        std::unique_ptr<Connection> connection;
        bool reused = false;
        while (!pool_->idle_.empty() && !connection) {
            connection = std::move(pool_->idle_.back());
            pool_->idle_.pop_back();
            if (!still_open(*connection)) {
                connection.reset();  // closed by the server while idle (its keep-alive timeout): not worth a try
            }
        }
        if (connection) {
            reused = true;
        } else {
            connection = std::make_unique<Connection>(pool_->executor_);
            beast::error_code ec;
            if (pool_->addresses_.empty()) {
                const auto literal = asio::ip::make_address(options_.host, ec);
                if (!ec) {
                    pool_->addresses_.emplace_back(literal, options_.port);
                } else {
                    // A name: looked up off the event loop (Asio's resolver thread). getaddrinfo cannot be bounded
                    // by the deadline; a cluster's DNS answers in microseconds, and only new connections ask.
                    ec.clear();
                    tcp::resolver resolver(pool_->executor_);
                    const std::string service = std::to_string(options_.port);
                    const auto results = co_await resolver.async_resolve(options_.host, service,
                                                                         asio::redirect_error(asio::use_awaitable, ec));
                    if (ec || results.empty()) {
                        std::string error = "cannot resolve upstream host " + options_.host + ": " + ec.message();
                        finish(*pool_, options_, method, start, span, "error", &error);
                        throw ClientError(ClientError::Kind::connect, error);
                    }
                    for (const auto& entry : results) {
                        pool_->addresses_.push_back(entry.endpoint());
                    }
                }
            }
            connection->stream.expires_after(std::min(options_.connect_timeout, remaining));
            co_await connection->stream.async_connect(pool_->addresses_, asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
                pool_->addresses_.clear();  // the name may point elsewhere now (a rescheduled pod)
                std::string error = "cannot connect to " + options_.upstream + ": " + ec.message();
                finish(*pool_, options_, method, start, span, "error", &error);
                throw ClientError(ec == beast::error::timeout ? ClientError::Kind::timeout : ClientError::Kind::connect,
                                  error);
            }
            connection->stream.socket().set_option(tcp::no_delay(true), ec);
        }

        beast::error_code ec;
        connection->stream.expires_at(deadline);
        co_await beast_http::async_write(connection->stream, request, asio::redirect_error(asio::use_awaitable, ec));
        beast_http::response_parser<beast_http::string_body> parser;
        parser.body_limit(options_.max_response_body);
        // A response to HEAD has a Content-Length but no body: without skip() the read would wait for one.
        parser.skip(request.method() == Verb::head);
        bool got_bytes = false;
        if (!ec) {
            co_await beast_http::async_read_header(connection->stream, connection->buffer, parser,
                                                   asio::redirect_error(asio::use_awaitable, ec));
            got_bytes = parser.got_some();
            if (!ec) {
                co_await beast_http::async_read(connection->stream, connection->buffer, parser,
                                                asio::redirect_error(asio::use_awaitable, ec));
            }
        }
        if (ec) {
            // A keep-alive connection the server closed while idle: the request never reached a handler.
            if (reused && !got_bytes && ec != beast::error::timeout && safe_to_resend && attempt == 0) {
                continue;
            }
            std::string error = options_.upstream + ": " + ec.message();
            finish(*pool_, options_, method, start, span, "error", &error);
            throw ClientError(ec == beast::error::timeout ? ClientError::Kind::timeout
                              : got_bytes                 ? ClientError::Kind::protocol
                                                          : ClientError::Kind::transport,
                              error);
        }
        Response response = parser.release();
        if (response.keep_alive() && pool_->idle_.size() < options_.max_idle) {
            connection->stream.expires_never();
            pool_->idle_.push_back(std::move(connection));
        }
        if (span) {
            span->set_attribute("http.response.status_code", static_cast<std::int64_t>(response.result_int()));
        }
        auto status = response.result_int();
        std::string error = "HTTP " + std::to_string(status);
        finish(*pool_, options_, method, start, span, status_class(status), status >= 500 ? &error : nullptr);
        co_return response;
    }
}

}  // namespace vigie::http
