#pragma once

#include <string>

#include "kit/config/config.hpp"
#include "kit/db/pool.hpp"
#include "kit/http/types.hpp"

namespace vigie::service {

/// Pool settings shared by every service: DATABASE_URL (or DATABASE_URL_FILE, a libpq conninfo or URI),
/// DB_POOL_SIZE, DB_MAX_WAITERS, DB_ACQUIRE_TIMEOUT, DB_QUERY_TIMEOUT, DB_CONNECT_TIMEOUT.
db::PoolOptions database_options(const config::Env& env, std::string pool_name);

/// Wraps a handler so that database trouble becomes a clear answer instead of a 500: unavailable, timeout and
/// pool exhaustion → 503 problem+json with Retry-After (the client may try again; nothing was committed).
http::Handler with_database_errors(http::Handler handler);

}  // namespace vigie::service
