#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace vigie::http {

/// The parameters of a query string (`a=1&b=2`), restricted to the names a route accepts. Values are taken as
/// they are (no percent-decoding): our parameters are numbers, ids and opaque cursors, and anything else is refused.
class QueryParams {
  public:
    /// Throws ProblemError 400 for an unknown or repeated name, or a value with characters outside [A-Za-z0-9-_.~].
    QueryParams(std::string_view query, std::initializer_list<std::string_view> allowed);

    std::optional<std::string_view> get(std::string_view name) const;
    /// The integer value of `name`, `fallback` when absent; 400 when it is not an integer in [min, max].
    std::int64_t integer(std::string_view name, std::int64_t fallback, std::int64_t min, std::int64_t max) const;

  private:
    std::vector<std::pair<std::string_view, std::string_view>> items_;
};

}  // namespace vigie::http
