#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kit/trace/trace.hpp"

namespace vigie::http {

namespace beast_http = boost::beast::http;
using Request = beast_http::request<beast_http::string_body>;
using Response = beast_http::response<beast_http::string_body>;
using Verb = beast_http::verb;
using Status = beast_http::status;
using Clock = std::chrono::steady_clock;

/// Path parameters captured by a route template (`/users/{id}` → {"id", "42"}); views into the request target.
class PathParams {
  public:
    void add(std::string_view name, std::string_view value) { items_.emplace_back(name, value); }
    /// The value of `name`; empty when the template has no such parameter.
    std::string_view get(std::string_view name) const {
        for (const auto& [key, value] : items_) {
            if (key == name) {
                return value;
            }
        }
        return {};
    }
    void clear() { items_.clear(); }

  private:
    std::vector<std::pair<std::string_view, std::string_view>> items_;
};

/// What a handler gets for one request. Lives until the handler's awaitable completes.
struct RequestContext {
    const Request& request;
    PathParams params;
    std::string_view route;  ///< the matched template, e.g. "/api/v1/users/{id}"
    std::string_view path;   ///< the target without its query string
    std::string_view query;  ///< the query string without '?'
    std::string request_id;
    trace::SpanContext span;  ///< the server span of this request: parent of the handler's own spans
    Clock::time_point deadline;
    std::string_view client;  ///< the peer's IP address (per-client limits, X-Forwarded-For); empty when unknown
};

using Handler = std::function<boost::asio::awaitable<Response>(RequestContext&)>;

}  // namespace vigie::http
