#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "kit/http/types.hpp"

namespace vigie::trace {
class Tracer;
}

namespace vigie::http {

/// Where an HTTP client call failed before a response arrived.
class ClientError : public std::runtime_error {
  public:
    enum class Kind { connect, timeout, transport, protocol };
    ClientError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    Kind kind() const { return kind_; }

  private:
    Kind kind_;
};

struct ClientOptions {
    std::string service;   ///< the calling service: `service` label
    std::string upstream;  ///< `upstream` label and span peer name, e.g. "user"
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    std::size_t max_idle = 64;  ///< idle keep-alive connections kept; more are closed after use
    std::size_t max_response_body = 1024 * 1024;
    std::chrono::milliseconds connect_timeout{1000};
};

/// A keep-alive HTTP/1.1 client for one upstream address. Single-threaded like the server: use it from the
/// io_context it was made on. Propagates `traceparent` and the remaining deadline; records
/// `http_client_request_duration_seconds`. It makes one attempt; retry policy belongs to the caller, except that
/// a request that failed on a reused keep-alive connection before any response byte is resent once on a fresh
/// connection when that is safe (idempotent method or an Idempotency-Key).
class Client {
  public:
    Client(boost::asio::any_io_executor executor, ClientOptions options, trace::Tracer* tracer = nullptr);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    /// Sends `request` (Host, Content-Length and tracing headers are set here) and reads the response before
    /// `deadline`. Throws ClientError.
    boost::asio::awaitable<Response> send(Request request, Clock::time_point deadline,
                                          const trace::SpanContext* parent = nullptr);

    const ClientOptions& options() const { return options_; }
    std::size_t idle_connections() const;

  private:
    class Pool;
    ClientOptions options_;
    trace::Tracer* tracer_;
    std::shared_ptr<Pool> pool_;
};

/// A host and port taken from "http://host:port" (an IPv4/IPv6 literal, or a name the client resolves when it
/// opens a connection); nullopt for anything else (https, a path, no port).
struct Endpoint {
    std::string host;
    std::uint16_t port = 0;
};
std::optional<Endpoint> parse_http_endpoint(std::string_view url);

/// True for methods whose repetition has no further effect (RFC 9110 §9.2.2).
bool is_idempotent(Verb method);

}  // namespace vigie::http
