#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "kit/http/router.hpp"
#include "kit/http/types.hpp"

namespace vigie::trace {
class Tracer;
}

namespace vigie::http {

/// Limits and deadlines of one listener. Every one is bounded: a slow or hostile client costs a bounded amount.
struct ServerOptions {
    std::string address = "127.0.0.1";
    std::uint16_t port = 0;                            ///< 0 = ephemeral (tests); see Server::port()
    std::size_t max_body_bytes = 64 * 1024;            ///< larger bodies get 413
    std::size_t max_header_bytes = 8 * 1024;           ///< larger request heads get 431
    std::size_t max_connections = 4096;                ///< further connections are closed at once
    std::chrono::milliseconds idle_timeout{60000};     ///< keep-alive connection with no request
    std::chrono::milliseconds read_timeout{10000};     ///< a request, once started, must arrive within this
    std::chrono::milliseconds write_timeout{10000};    ///< a response must be taken within this
    std::chrono::milliseconds handler_timeout{10000};  ///< deadline handed to handlers (lowered by the caller's)
};

/// What a listener records about each request. The admin listener records nothing: scrapes and probes must not
/// pollute the service's own request metrics, logs or traces.
struct ServerObservability {
    std::string service;              ///< `service` label and `service.name`
    trace::Tracer* tracer = nullptr;  ///< span per request when set
    bool metrics = false;             ///< http_server_* metrics
    bool access_log = false;          ///< one log line per request
};

/// Runs before a matched route's handler; a response it returns is sent instead (fault injection uses it).
using Middleware = std::function<boost::asio::awaitable<std::optional<Response>>(RequestContext&)>;

/// An HTTP/1.1 keep-alive server on one port. Single-threaded: it runs on the io_context it is given, which is
/// driven by one thread (scale out with replicas, as the gateway balances them).
class Server {
  public:
    Server(boost::asio::io_context& io, ServerOptions options, const Router& router, ServerObservability observe,
           Middleware middleware = nullptr);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    /// Binds and starts accepting; throws std::system_error when the address cannot be bound.
    void start();
    /// The bound port (the real one when the options asked for 0).
    std::uint16_t port() const;

    /// Stops accepting and makes every later response `Connection: close`; connections stay up meanwhile so that
    /// requests already sent on them are still answered.
    void stop_accepting();
    /// Completes once no request is in flight (or at `deadline`), then closes every connection.
    boost::asio::awaitable<void> drain(Clock::time_point deadline);

    std::size_t in_flight() const;
    std::size_t connections() const;

    class Impl;

  private:
    std::shared_ptr<Impl> impl_;
};

/// Label for a status code: "1xx" … "5xx".
std::string_view status_class(unsigned status);

/// A fresh request id (32 lowercase hex characters).
std::string new_request_id();

}  // namespace vigie::http
