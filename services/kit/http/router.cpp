#include "kit/http/router.hpp"

#include <boost/beast/http/verb.hpp>
#include <stdexcept>

namespace vigie::http {

namespace {

bool is_parameter(std::string_view segment) {
    return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

bool is_dot_segment(std::string_view segment) {
    // "." / ".." and their percent-encoded spellings: a path-traversal attempt, never a resource name here.
    auto dot = [](std::string_view s, std::size_t& i) {
        if (i < s.size() && s[i] == '.') {
            ++i;
            return true;
        }
        if (i + 2 < s.size() && s[i] == '%' && s[i + 1] == '2' && (s[i + 2] == 'e' || s[i + 2] == 'E')) {
            i += 3;
            return true;
        }
        return false;
    };
    std::size_t i = 0;
    if (!dot(segment, i)) {
        return false;
    }
    if (i == segment.size()) {
        return true;
    }
    return dot(segment, i) && i == segment.size();
}

bool allow_lists(std::string_view allow, std::string_view method) {
    while (!allow.empty()) {
        auto comma = allow.find(", ");
        if (allow.substr(0, comma) == method) {
            return true;
        }
        allow = comma == std::string_view::npos ? std::string_view() : allow.substr(comma + 2);
    }
    return false;
}

bool same_shape(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (is_parameter(a[i]) != is_parameter(b[i]) || (!is_parameter(a[i]) && a[i] != b[i])) {
            return false;
        }
    }
    return true;
}

}  // namespace

bool split_path(std::string_view path, std::vector<std::string_view>& segments) {
    segments.clear();
    if (path.empty() || path.front() != '/') {
        return false;
    }
    if (path.size() == 1) {
        return true;
    }
    std::size_t start = 1;
    while (start <= path.size()) {
        auto end = path.find('/', start);
        if (end == std::string_view::npos) {
            end = path.size();
        }
        auto segment = path.substr(start, end - start);
        if (segment.empty() && end != path.size()) {
            return false;  // "//" inside the path
        }
        if (is_dot_segment(segment)) {
            return false;
        }
        if (!segment.empty()) {
            segments.push_back(segment);
        }
        start = end + 1;
    }
    return true;
}

void Router::add(Verb method, std::string pattern, Handler handler) {
    std::vector<std::string_view> views;
    if (!split_path(pattern, views)) {
        throw std::invalid_argument("malformed route template: " + pattern);
    }
    Compiled compiled;
    compiled.segments.assign(views.begin(), views.end());
    for (std::size_t i = 0; i < routes_.size(); ++i) {
        // "/users/{id}" and "/users/{name}" have the same shape: the second could never match.
        if (routes_[i]->method == method && same_shape(compiled_[i].segments, compiled.segments)) {
            throw std::invalid_argument("duplicate route: " + pattern);
        }
    }
    compiled_.push_back(std::move(compiled));
    routes_.push_back(std::make_unique<Route>(Route{method, std::move(pattern), std::move(handler), routes_.size()}));
}

RouteMatch Router::match(Verb method, std::string_view path, PathParams& params) const {
    thread_local std::vector<std::string_view> segments;
    RouteMatch result;
    // "/users/" is not "/users": a trailing slash names another resource (RFC 3986), which no route declares.
    if (!split_path(path, segments) || (path.size() > 1 && path.back() == '/')) {
        return result;
    }
    for (std::size_t i = 0; i < routes_.size(); ++i) {
        const auto& pattern = compiled_[i].segments;
        if (pattern.size() != segments.size()) {
            continue;
        }
        bool same = true;
        for (std::size_t s = 0; s < pattern.size() && same; ++s) {
            same = is_parameter(pattern[s]) || pattern[s] == segments[s];
        }
        if (!same) {
            continue;
        }
        if (routes_[i]->method != method) {
            // Each method once, even when a literal and a parameter template both match ("/users/me", "/users/{id}").
            auto name = boost::beast::http::to_string(routes_[i]->method);
            if (!allow_lists(result.allow, name)) {
                if (!result.allow.empty()) {
                    result.allow += ", ";
                }
                result.allow += name;
            }
            result.kind = RouteMatch::Kind::method_not_allowed;
            continue;
        }
        params.clear();
        for (std::size_t s = 0; s < pattern.size(); ++s) {
            if (is_parameter(pattern[s])) {
                std::string_view name = pattern[s];
                params.add(name.substr(1, name.size() - 2), segments[s]);
            }
        }
        result.kind = RouteMatch::Kind::found;
        result.route = routes_[i].get();
        result.allow.clear();
        return result;
    }
    return result;
}

}  // namespace vigie::http
