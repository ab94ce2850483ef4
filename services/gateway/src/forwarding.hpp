#pragma once

#include <cstddef>
#include <string_view>

#include "kit/http/types.hpp"

namespace vigie::gateway {

/// True for the hop-by-hop headers of RFC 9110 §7.6.1 (Connection, Keep-Alive, Proxy-*, TE, Trailer,
/// Transfer-Encoding, Upgrade), which describe one connection and are never forwarded.
bool is_hop_by_hop(std::string_view name);

/// The request to send upstream for `context.request`: same method, target and end-to-end headers and body;
/// without hop-by-hop headers, the headers the client's Connection header names, Host, Content-Length (set again
/// by the client) and the client's own deadline and trace headers (the gateway sets its own); with X-Request-Id and
/// X-Forwarded-For set by the gateway (the client's X-Forwarded-For and Forwarded are dropped: the gateway is the
/// edge, nothing before it is trusted).
http::Request upstream_request(const http::RequestContext& context);

/// Removes hop-by-hop headers (and those the upstream's Connection header names) from an upstream response before
/// it is relayed; the server frames the body again.
void strip_hop_by_hop(http::Response& response);

/// Number of header fields of a message.
std::size_t header_count(const http::Request& request);

}  // namespace vigie::gateway
