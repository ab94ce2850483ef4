#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kit/http/types.hpp"

namespace vigie::http {

/// A registered route: a method and a path template whose `{name}` segments capture one path segment each.
struct Route {
    Verb method;
    std::string pattern;
    Handler handler;
    std::size_t index;  ///< position in the router; lets the server keep per-route state (metrics) in a flat array
};

/// The outcome of matching a request path.
struct RouteMatch {
    enum class Kind { found, not_found, method_not_allowed };
    Kind kind = Kind::not_found;
    const Route* route = nullptr;
    std::string allow;  ///< for method_not_allowed: the methods the path does accept, for the Allow header
};

/// Maps (method, path) to handlers. Built at start-up, then read-only (safe to share between connections).
class Router {
  public:
    /// Registers a route; throws std::invalid_argument for a malformed template or a duplicate (method, template).
    void add(Verb method, std::string pattern, Handler handler);

    /// Matches `path` (no query string). On success fills `params` with views into `path` and `route.pattern`.
    RouteMatch match(Verb method, std::string_view path, PathParams& params) const;

    const std::vector<std::unique_ptr<Route>>& routes() const { return routes_; }

  private:
    struct Compiled {
        std::vector<std::string> segments;  ///< literal text, or "{name}" for a parameter
    };
    std::vector<std::unique_ptr<Route>> routes_;
    std::vector<Compiled> compiled_;
};

/// Splits `path` into its '/'-separated segments; false for an empty segment or a '.'/'..' segment (also
/// percent-encoded), which the server answers with 400 rather than routing.
bool split_path(std::string_view path, std::vector<std::string_view>& segments);

}  // namespace vigie::http
