#include "kit/http/server.hpp"

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <charconv>
#include <random>
#include <unordered_set>

#include "kit/http/problem.hpp"
#include "kit/log/log.hpp"
#include "kit/metrics/registry.hpp"
#include "kit/trace/trace.hpp"

namespace vigie::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;

std::string_view status_class(unsigned status) {
    static constexpr std::array<std::string_view, 6> kClasses = {"1xx", "1xx", "2xx", "3xx", "4xx", "5xx"};
    auto index = status / 100;
    return index < kClasses.size() ? kClasses[index] : "5xx";
}

std::string new_request_id() {
    thread_local std::mt19937_64 generator{std::random_device{}()};
    static constexpr char kHex[] = "0123456789abcdef";
    std::string id(32, '0');
    for (int half = 0; half < 2; ++half) {
        auto bits = generator();
        for (int i = 0; i < 16; ++i) {
            id[half * 16 + i] = kHex[(bits >> (i * 4)) & 0xF];
        }
    }
    return id;
}

namespace {

/// A client-supplied request id is kept only when it is short and made of safe characters (it is logged).
bool acceptable_request_id(std::string_view id) {
    if (id.empty() || id.size() > 128) {
        return false;
    }
    for (char c : id) {
        bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/// Methods that are their own metric label; anything else is "_OTHER" (bounded cardinality, as OpenTelemetry does).
std::string_view method_label(const Request& request) {
    switch (request.method()) {
        case Verb::get:
        case Verb::head:
        case Verb::post:
        case Verb::put:
        case Verb::patch:
        case Verb::delete_:
        case Verb::options:
            return request.method_string();
        default:
            return "_OTHER";
    }
}

/// The caller's remaining time budget, propagated by our clients in this header (milliseconds).
constexpr std::string_view kDeadlineHeader = "X-Request-Timeout-Ms";

std::optional<std::chrono::milliseconds> caller_timeout(const Request& request) {
    auto text = request[kDeadlineHeader];
    if (text.empty()) {
        return std::nullopt;
    }
    std::int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || value <= 0) {
        return std::nullopt;
    }
    return std::chrono::milliseconds(value);
}

}  // namespace

class Server::Impl : public std::enable_shared_from_this<Server::Impl> {
  public:
    Impl(asio::io_context& io, ServerOptions options, const Router& router, ServerObservability observe,
         Middleware middleware)
        : io_(io),
          options_(std::move(options)),
          router_(router),
          observe_(std::move(observe)),
          middleware_(std::move(middleware)),
          acceptor_(io) {
        if (observe_.metrics) {
            resolve_metrics();
        }
    }

    void start() {
        tcp::endpoint endpoint{asio::ip::make_address(options_.address), options_.port};
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen(asio::socket_base::max_listen_connections);
        accepting_ = true;
        asio::co_spawn(io_, accept_loop(shared_from_this()), asio::detached);
    }

    std::uint16_t port() const { return acceptor_.is_open() ? acceptor_.local_endpoint().port() : bound_port_; }

    void stop_accepting() {
        if (acceptor_.is_open()) {
            bound_port_ = acceptor_.local_endpoint().port();
        }
        accepting_ = false;
        draining_ = true;
        beast::error_code ignored;
        acceptor_.close(ignored);
    }

    asio::awaitable<void> drain(Clock::time_point deadline) {
        stop_accepting();
        asio::steady_timer timer(io_);
        while (in_flight_ > 0 && Clock::now() < deadline) {
            timer.expires_after(std::chrono::milliseconds(5));
            co_await timer.async_wait(asio::use_awaitable);
        }
        close_all();
    }

    void close_all() {
        for (auto* stream : connections_) {
            beast::error_code ignored;
            stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
            stream->socket().close(ignored);
        }
    }

    std::size_t in_flight() const { return in_flight_; }
    std::size_t connections() const { return connections_.size(); }

  private:
    struct RouteMetrics {
        std::array<metrics::Histogram*, 5> duration{};
        std::array<metrics::Counter*, 5> requests{};
    };

    void resolve_metrics() {
        auto& registry = metrics::registry();
        duration_family_ = &registry.histogram("http_server_request_duration_seconds",
                                               "Duration of HTTP requests served, by route template.",
                                               {"service", "route", "method", "status_class"});
        requests_family_ = &registry.counter("http_server_requests_total", "HTTP requests served, by route template.",
                                             {"service", "route", "method", "status_class"});
        active_ = &registry.gauge("http_server_active_requests", "HTTP requests being served.", {"service"})
                       .with({observe_.service});
        for (const auto& route : router_.routes()) {
            RouteMetrics metrics;
            auto method = boost::beast::http::to_string(route->method);
            for (unsigned c = 0; c < 5; ++c) {
                auto klass = status_class((c + 1) * 100);
                metrics.duration[c] = &duration_family_->with({observe_.service, route->pattern, method, klass});
                metrics.requests[c] = &requests_family_->with({observe_.service, route->pattern, method, klass});
            }
            route_metrics_.push_back(metrics);
        }
    }

    void record(const Route* route, const Request& request, unsigned status, double seconds) {
        if (!observe_.metrics) {
            return;
        }
        auto c = std::min<unsigned>(std::max<unsigned>(status / 100, 1), 5) - 1;
        if (route != nullptr) {
            route_metrics_[route->index].duration[c]->observe(seconds);
            route_metrics_[route->index].requests[c]->inc();
            return;
        }
        // Unmatched requests share one route label so that scanners cannot inflate cardinality.
        auto method = method_label(request);
        auto klass = status_class(status);
        duration_family_->with({observe_.service, "unmatched", method, klass}).observe(seconds);
        requests_family_->with({observe_.service, "unmatched", method, klass}).inc();
    }

    static asio::awaitable<void> accept_loop(std::shared_ptr<Impl> self) {
        while (self->accepting_) {
            tcp::socket socket(self->io_);
            beast::error_code ec;
            co_await self->acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
                if (!self->accepting_ || ec == asio::error::operation_aborted) {
                    break;
                }
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn("accept failed", {{"error.message", ec.message()}});
                asio::steady_timer timer(self->io_, std::chrono::milliseconds(50));
                co_await timer.async_wait(asio::use_awaitable);
                continue;
            }
            if (self->connections_.size() >= self->options_.max_connections) {
                socket.close(ec);
                continue;
            }
            socket.set_option(tcp::no_delay(true), ec);
            asio::co_spawn(self->io_, session(self, std::move(socket)), asio::detached);
        }
    }

    static asio::awaitable<void> session(std::shared_ptr<Impl> self, tcp::socket socket) {
        try {
            co_await self->serve(std::move(socket));
        } catch (const std::exception& e) {
            log::error("connection failed", {{"error.message", std::string_view(e.what())}});
        }
    }

    asio::awaitable<void> serve(tcp::socket socket) {
        beast::tcp_stream stream(std::move(socket));
        connections_.insert(&stream);
        struct Forget {
            Impl* impl;
            beast::tcp_stream* stream;
            ~Forget() { impl->connections_.erase(stream); }
        } forget{this, &stream};

        std::string client;
        {
            beast::error_code ec;
            auto remote = stream.socket().remote_endpoint(ec);
            client = ec ? std::string() : remote.address().to_string();
        }
        beast::flat_buffer buffer(options_.max_header_bytes + options_.max_body_bytes + 4096);
        beast::error_code ec;
        while (true) {
            if (buffer.size() == 0) {
                // Idle: wait for the first bytes of the next request under the keep-alive deadline.
                stream.expires_after(options_.idle_timeout);
                auto n = co_await stream.async_read_some(buffer.prepare(4096),
                                                         asio::redirect_error(asio::use_awaitable, ec));
                if (ec) {
                    break;
                }
                buffer.commit(n);
            }
            beast_http::request_parser<beast_http::string_body> parser;
            parser.header_limit(static_cast<std::uint32_t>(options_.max_header_bytes));
            parser.body_limit(options_.max_body_bytes);
            // One deadline for head and body together, so a client trickling bytes cannot extend it. At the
            // deadline the stream closes the socket: the slow client gets no 408, its connection is cut.
            stream.expires_after(options_.read_timeout);
            co_await beast_http::async_read_header(stream, buffer, parser,
                                                   asio::redirect_error(asio::use_awaitable, ec));
            std::optional<Response> refusal;
            if (ec) {
                refusal = refusal_for(ec);
            } else if (ambiguous_framing(parser.get())) {
                refusal = problem(Status::bad_request,
                                  "Transfer-Encoding must be exactly 'chunked' (HTTP/1.1, without Content-Length)");
            } else {
                if (!parser.is_done() && buffer.size() == 0 && expects_continue(parser.get())) {
                    // curl and others hold a body back (curl: 1 s) until they get this interim answer; not needed
                    // when body bytes are already here.
                    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
                    co_await asio::async_write(stream, asio::buffer(kContinue),
                                               asio::redirect_error(asio::use_awaitable, ec));
                }
                if (!ec) {
                    co_await beast_http::async_read(stream, buffer, parser,
                                                    asio::redirect_error(asio::use_awaitable, ec));
                }
                if (ec) {
                    refusal = refusal_for(ec);
                }
            }
            if (ec || refusal) {
                if (refusal) {
                    refusal->keep_alive(false);
                    stream.expires_after(options_.write_timeout);
                    co_await beast_http::async_write(stream, *refusal, asio::redirect_error(asio::use_awaitable, ec));
                }
                break;
            }
            ++in_flight_;
            auto& request = parser.get();
            Response response = co_await handle(request, client);
            if (request.method() == Verb::head) {
                // RFC 9110 §9.3.2: the head a GET would get (Content-Length included), never content. The client
                // reads no body, so bytes sent anyway would be taken for the start of the next response.
                response.body().clear();
            }
            bool keep_alive = request.keep_alive() && !draining_;
            response.keep_alive(keep_alive);
            stream.expires_after(options_.write_timeout);
            co_await beast_http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
            --in_flight_;
            if (ec || !keep_alive) {
                break;
            }
        }
        stream.socket().shutdown(tcp::socket::shutdown_send, ec);
        stream.socket().close(ec);
    }

    /// Request smuggling guard. Beast 1.74 frames a request whose Transfer-Encoding it does not understand
    /// ("gzip", "chunked, gzip", a second Transfer-Encoding header) by its Content-Length or as bodiless, where a proxy
    /// in front may frame the same bytes otherwise (RFC 9112 §6.1): such a request gets 400 and the connection closes.
    static bool ambiguous_framing(const Request& request) {
        auto encodings = request.count(beast_http::field::transfer_encoding);
        if (encodings == 0) {
            return false;
        }
        if (encodings > 1 || request.version() < 11 || request.count(beast_http::field::content_length) > 0) {
            return true;
        }
        return !beast::iequals(request[beast_http::field::transfer_encoding], "chunked");
    }

    static bool expects_continue(const Request& request) {
        return request.version() >= 11 && beast::iequals(request[beast_http::field::expect], "100-continue");
    }

    /// The answer to a request that could not be read, or nothing when the connection just ended or timed out.
    static std::optional<Response> refusal_for(const beast::error_code& ec) {
        if (ec == beast_http::error::body_limit) {
            return problem(Status::payload_too_large, "the request body is larger than this service accepts");
        }
        if (ec == beast_http::error::header_limit || ec == beast_http::error::buffer_overflow) {
            return problem(Status::request_header_fields_too_large, "the request head is too large");
        }
        if (ec == beast_http::error::end_of_stream || ec == beast_http::error::partial_message ||
            ec.category() != beast_http::make_error_code(beast_http::error::bad_method).category()) {
            return std::nullopt;  // the peer went away or the socket failed: nobody to answer
        }
        return problem(Status::bad_request, "malformed HTTP request: " + ec.message());
    }

    asio::awaitable<Response> handle(Request& request, std::string_view client) {
        auto start = Clock::now();
        RequestContext context{request, {}, {}, {}, {}, {}, {}, {}, client};
        auto target = request.target();
        auto question = target.find('?');
        context.path = target.substr(0, question);
        context.query = question == std::string_view::npos ? std::string_view() : target.substr(question + 1);

        auto incoming_id = request["X-Request-Id"];
        context.request_id = acceptable_request_id(incoming_id) ? std::string(incoming_id) : new_request_id();
        auto parent = trace::parse_traceparent(request["traceparent"]);

        RouteMatch match;
        std::optional<Response> early;
        thread_local std::vector<std::string_view> segments;
        if (context.path.empty() || context.path.front() != '/') {
            early = problem(Status::bad_request, "the request target must be an absolute path");
        } else if (!split_path(context.path, segments)) {
            // "//", "." and ".." (also percent-encoded): refused rather than normalised, so that no proxy in front
            // and no handler behind can disagree about which resource was meant.
            early = problem(Status::bad_request, "the request path has empty or dot segments");
        } else {
            match = router_.match(request.method(), context.path, context.params);
            if (match.kind == RouteMatch::Kind::not_found) {
                early = problem(Status::not_found, "no such resource");
            } else if (match.kind == RouteMatch::Kind::method_not_allowed) {
                early = problem(Status::method_not_allowed, "this resource does not accept that method");
                early->set(beast_http::field::allow, match.allow);
            }
        }
        context.route = match.route != nullptr ? std::string_view(match.route->pattern) : std::string_view("unmatched");

        std::optional<trace::Span> span;
        if (observe_.tracer != nullptr) {
            std::string name(method_label(request));
            name += ' ';
            name += context.route;
            span.emplace(
                observe_.tracer->start_span(std::move(name), trace::SpanKind::server, parent ? &*parent : nullptr));
            context.span = span->context();
        } else if (parent) {
            context.span = *parent;
        }

        auto budget = options_.handler_timeout;
        if (auto caller = caller_timeout(request); caller && *caller < budget) {
            budget = *caller;
        }
        context.deadline = start + budget;

        Response response;
        if (early) {
            response = std::move(*early);
        } else {
            if (observe_.metrics) {
                active_->add(1);
            }
            try {
                std::optional<Response> intercepted;
                if (middleware_) {
                    intercepted = co_await middleware_(context);
                }
                // Plain if/else: GCC 12 miscompiles co_await inside a conditional expression (double destruction).
                if (intercepted) {
                    response = std::move(*intercepted);
                } else {
                    response = co_await match.route->handler(context);
                }
            } catch (const ProblemError& e) {
                response = problem(e.status(), e.what());
            } catch (const std::exception& e) {
                log::error("handler failed",
                           {{"error.message", std::string_view(e.what())}, {"http.route", context.route}});
                response = problem(Status::internal_server_error, "internal error");
            }
            if (observe_.metrics) {
                active_->add(-1);
            }
        }
        response.version(request.version());
        response.set("X-Request-Id", context.request_id);
        if (response.result() == Status::unauthorized &&
            response.find(beast_http::field::www_authenticate) == response.end()) {
            response.set(beast_http::field::www_authenticate, "Bearer");
        }
        if (response.find(beast_http::field::content_length) == response.end()) {
            response.prepare_payload();
        }

        auto status = response.result_int();
        auto elapsed = Clock::now() - start;
        double seconds = std::chrono::duration<double>(elapsed).count();
        record(match.route, request, status, seconds);
        if (span) {
            span->set_attribute("http.request.method", std::string(method_label(request)));
            span->set_attribute("http.route", std::string(context.route));
            span->set_attribute("url.path", std::string(context.path));
            span->set_attribute("http.response.status_code", static_cast<std::int64_t>(status));
            if (status >= 500) {
                span->set_error("HTTP " + std::to_string(status));
            }
            span->end();
        }
        if (observe_.access_log && log::enabled(log::Level::info)) {
            auto trace_id = context.span.valid() ? context.span.trace_id_hex() : std::string();
            auto span_id = context.span.valid() ? context.span.span_id_hex() : std::string();
            log::info("request",
                      {{"http.request.method", request.method_string()},
                       {"url.path", context.path},
                       {"http.route", context.route},
                       {"http.response.status_code", static_cast<std::int64_t>(status)},
                       {"event.duration", static_cast<std::int64_t>(
                                              std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count())},
                       {"http.request.id", std::string_view(context.request_id)},
                       {"client.address", client},
                       {"trace.id", std::string_view(trace_id)},
                       {"span.id", std::string_view(span_id)}});
        }
        co_return response;
    }

    asio::io_context& io_;
    ServerOptions options_;
    const Router& router_;
    ServerObservability observe_;
    Middleware middleware_;
    tcp::acceptor acceptor_;
    std::uint16_t bound_port_ = 0;
    bool accepting_ = false;
    bool draining_ = false;
    std::size_t in_flight_ = 0;
    std::unordered_set<beast::tcp_stream*> connections_;
    metrics::Family<metrics::Histogram>* duration_family_ = nullptr;
    metrics::Family<metrics::Counter>* requests_family_ = nullptr;
    metrics::Gauge* active_ = nullptr;
    std::vector<RouteMetrics> route_metrics_;
};

Server::Server(asio::io_context& io, ServerOptions options, const Router& router, ServerObservability observe,
               Middleware middleware)
    : impl_(std::make_shared<Impl>(io, std::move(options), router, std::move(observe), std::move(middleware))) {}

Server::~Server() {
    impl_->stop_accepting();
    impl_->close_all();
}

void Server::start() {
    impl_->start();
}
std::uint16_t Server::port() const {
    return impl_->port();
}
void Server::stop_accepting() {
    impl_->stop_accepting();
}
asio::awaitable<void> Server::drain(Clock::time_point deadline) {
    return impl_->drain(deadline);
}
std::size_t Server::in_flight() const {
    return impl_->in_flight();
}
std::size_t Server::connections() const {
    return impl_->connections();
}

}  // namespace vigie::http
