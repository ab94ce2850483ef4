#include "forwarding.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <iterator>

namespace vigie::gateway {

namespace {

namespace beast = boost::beast;
using http::beast_http::field;

bool hop_by_hop_field(field name) {
    switch (name) {
        case field::connection:
        case field::keep_alive:
        case field::proxy_connection:
        case field::proxy_authenticate:
        case field::proxy_authorization:
        case field::te:
        case field::trailer:
        case field::transfer_encoding:
        case field::upgrade:
            return true;
        default:
            return false;
    }
}

/// True when the comma-separated Connection header value names `name`.
bool named_in_connection(std::string_view connection, std::string_view name) {
    if (connection.empty()) {
        return false;
    }
    for (auto token : http::beast_http::token_list(connection)) {
        if (beast::iequals(token, name)) {
            return true;
        }
    }
    return false;
}

/// Request headers the gateway sets itself (or the client sets again), so the caller's values never pass.
bool replaced_by_gateway(field name, std::string_view text) {
    switch (name) {
        case field::host:
        case field::content_length:
        case field::forwarded:
            return true;
        case field::unknown:
            return beast::iequals(text, "X-Request-Id") || beast::iequals(text, "X-Forwarded-For") ||
                   beast::iequals(text, "X-Request-Timeout-Ms") || beast::iequals(text, "traceparent");
        default:
            return false;
    }
}

}  // namespace

bool is_hop_by_hop(std::string_view name) {
    return hop_by_hop_field(http::beast_http::string_to_field(name));
}

http::Request upstream_request(const http::RequestContext& context) {
    const auto& in = context.request;
    http::Request out{in.method(), in.target(), 11};
    if (in.method() == http::Verb::unknown) {
        out.method_string(in.method_string());
    }
    auto connection = in[field::connection];
    for (const auto& header : in) {
        auto name = header.name();
        auto text = header.name_string();
        if (hop_by_hop_field(name) || replaced_by_gateway(name, text) || named_in_connection(connection, text)) {
            continue;
        }
        if (name == field::unknown) {
            out.insert(text, header.value());
        } else {
            out.insert(name, header.value());
        }
    }
    out.set("X-Request-Id", context.request_id);
    if (!context.client.empty()) {
        out.set("X-Forwarded-For", context.client);
    }
    out.body() = in.body();
    return out;
}

void strip_hop_by_hop(http::Response& response) {
    std::string connection(response[field::connection]);
    for (auto it = response.begin(); it != response.end();) {
        if (hop_by_hop_field(it->name()) || it->name() == field::content_length ||
            named_in_connection(connection, it->name_string())) {
            it = response.erase(it);
        } else {
            ++it;
        }
    }
}

std::size_t header_count(const http::Request& request) {
    return static_cast<std::size_t>(std::distance(request.begin(), request.end()));
}

}  // namespace vigie::gateway
