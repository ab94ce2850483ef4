#include "kit/db/testing/pg_fixture.hpp"

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>

namespace vigie::db::testing {
namespace {

constexpr const char* kDefaultBindir = "/usr/lib/postgresql/15/bin";
constexpr const char* kServerUser = "postgres";

std::string quote_value(std::string_view value) {
    std::string out = "'";
    for (char c : value) {
        if (c == '\'' || c == '\\') {
            out += '\\';
        }
        out += c;
    }
    out += '\'';
    return out;
}

// An unused TCP port number. The server listens on a unix socket only, but the port names the socket file and
// a free one also keeps a future TCP listener from colliding.
int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t length = sizeof address;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        ::close(fd);
        throw std::runtime_error("cannot find a free port");
    }
    ::close(fd);
    return ntohs(address.sin_port);
}

void exec_sql(const std::string& conninfo, const std::string& sql) {
    std::unique_ptr<PGconn, decltype(&PQfinish)> connection(PQconnectdb(conninfo.c_str()), PQfinish);
    if (PQstatus(connection.get()) != CONNECTION_OK) {
        throw std::runtime_error("test PostgreSQL: cannot connect: " + std::string(PQerrorMessage(connection.get())));
    }
    std::unique_ptr<PGresult, decltype(&PQclear)> result(PQexec(connection.get(), sql.c_str()), PQclear);
    if (PQresultStatus(result.get()) != PGRES_COMMAND_OK) {
        throw std::runtime_error("test PostgreSQL: " + sql + ": " + PQresultErrorMessage(result.get()));
    }
}

std::string read_log(const std::filesystem::path& path) {
    std::ifstream in(path);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return content.size() > 2000 ? content.substr(content.size() - 2000) : content;
}

}  // namespace

std::string with_dbname(std::string_view conninfo, std::string_view dbname) {
    char* error = nullptr;
    const std::string text(conninfo);
    PQconninfoOption* options = PQconninfoParse(text.c_str(), &error);
    if (options == nullptr) {
        std::string message = error != nullptr ? error : "out of memory";
        PQfreemem(error);
        throw std::invalid_argument("invalid conninfo: " + message);
    }
    std::string out;
    for (PQconninfoOption* option = options; option->keyword != nullptr; ++option) {
        if (std::string_view(option->keyword) == "dbname" || option->val == nullptr) {
            continue;
        }
        out += std::string(option->keyword) + "=" + quote_value(option->val) + " ";
    }
    PQconninfoFree(options);
    return out + "dbname=" + quote_value(dbname);
}

PgServer& PgServer::shared() {
    static PgServer server;
    return server;
}

PgServer::PgServer() {
    if (const char* external = std::getenv("VIGIE_TEST_PG_CONNINFO"); external != nullptr && *external != '\0') {
        conninfo_ = external;
        return;
    }
    const char* bindir = std::getenv("VIGIE_PG_BINDIR");
    bindir_ = bindir != nullptr && *bindir != '\0' ? bindir : kDefaultBindir;
    if (!std::filesystem::exists(bindir_ / "initdb")) {
        throw std::runtime_error("test PostgreSQL: no initdb in " + bindir_.string() +
                                 " (install postgresql-15, set VIGIE_PG_BINDIR, or set VIGIE_TEST_PG_CONNINFO)");
    }
    // /tmp rather than $TMPDIR: unix socket paths are limited to 107 bytes.
    char pattern[] = "/tmp/vigie-pg-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
        throw std::runtime_error("test PostgreSQL: mkdtemp: " + std::string(std::strerror(errno)));
    }
    dir_ = pattern;
    owned_ = true;
    if (::geteuid() == 0) {
        const passwd* user = ::getpwnam(kServerUser);
        if (user == nullptr) {
            std::filesystem::remove_all(dir_);
            throw std::runtime_error("test PostgreSQL: running as root needs a 'postgres' user to run the server");
        }
        if (::chown(dir_.c_str(), user->pw_uid, user->pw_gid) != 0) {
            std::filesystem::remove_all(dir_);
            throw std::runtime_error("test PostgreSQL: chown: " + std::string(std::strerror(errno)));
        }
    }
    port_ = free_port();
    const auto data = dir_ / "data";
    try {
        make_data_directory(data);
        // Appended settings win over initdb's. Durability is pointless for a throwaway server.
        std::ofstream conf(data / "postgresql.conf", std::ios::app);
        conf << "\nlisten_addresses = ''\n"
             << "unix_socket_directories = '" << dir_.string() << "'\n"
             << "port = " << port_ << "\n"
             << "max_connections = 60\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n";
        conf.close();
        start();
    } catch (...) {
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
        throw;
    }
    conninfo_ = "host=" + dir_.string() + " port=" + std::to_string(port_) + " user=postgres dbname=postgres";
}

PgServer::~PgServer() {
    if (!owned_) {
        for (const auto& name : created_databases_) {
            try {
                exec_sql(conninfo_, "DROP DATABASE IF EXISTS \"" + name + "\" WITH (FORCE)");
            } catch (const std::exception&) {
                // Best effort: a leftover database on a CI server is harmless.
            }
        }
        return;
    }
    try {
        // Immediate: nothing to keep, and it is the fastest way down.
        run_as_server_user({(bindir_ / "pg_ctl").string(), "-D", (dir_ / "data").string(), "-m", "immediate", "-w",
                            "-t", "30", "stop"},
                           "pg_ctl_stop.log");
    } catch (const std::exception&) {
        // Already stopped by a test, most likely.
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
}

std::string PgServer::create_database(std::string_view prefix) {
    const std::string name =
        std::string(prefix) + "_" + std::to_string(::getpid()) + "_" + std::to_string(next_database_++);
    exec_sql(conninfo_, "CREATE DATABASE \"" + name + "\"");
    created_databases_.push_back(name);
    return with_dbname(conninfo_, name);
}

void PgServer::stop() {
    if (!owned_) {
        throw std::logic_error("PgServer::stop needs a private server (VIGIE_TEST_PG_CONNINFO is set)");
    }
    run_as_server_user(
        {(bindir_ / "pg_ctl").string(), "-D", (dir_ / "data").string(), "-m", "fast", "-w", "-t", "30", "stop"},
        "pg_ctl_stop.log");
}

void PgServer::start() {
    if (!owned_) {
        throw std::logic_error("PgServer::start needs a private server (VIGIE_TEST_PG_CONNINFO is set)");
    }
    run_as_server_user({(bindir_ / "pg_ctl").string(), "-D", (dir_ / "data").string(), "-l",
                        (dir_ / "server.log").string(), "-w", "-t", "30", "start"},
                       "pg_ctl_start.log");
}

void PgServer::make_data_directory(const std::filesystem::path& data) const {
    // initdb costs over a second and ctest runs every test case in its own process, so the first run leaves a
    // pristine cluster behind and later ones copy it. Keyed on the binaries (a cluster belongs to one major version)
    // and the server user; published with rename() so no one ever copies a half-written template.
    const passwd* user = ::geteuid() == 0 ? ::getpwnam(kServerUser) : nullptr;
    const uid_t server_uid = user != nullptr ? user->pw_uid : ::geteuid();
    const std::filesystem::path cache = "/tmp/vigie-pg-template-v1-" + std::to_string(server_uid) + "-" +
                                        std::to_string(std::hash<std::string>{}(bindir_.string()));
    struct stat info {};
    if (::lstat(cache.c_str(), &info) == 0 && S_ISDIR(info.st_mode) && info.st_uid == server_uid &&
        std::filesystem::exists(cache / "PG_VERSION")) {
        try {
            run_as_server_user({"/bin/cp", "-a", cache.string(), data.string()}, "copy.log");
            return;
        } catch (const std::exception&) {
            std::error_code ignored;
            std::filesystem::remove_all(data, ignored);  // fall back to initdb
        }
    }
    run_as_server_user({(bindir_ / "initdb").string(), "-D", data.string(), "-U", "postgres", "-A", "trust", "-E",
                        "UTF8", "--locale=C", "--no-sync", "--no-instructions", "--wal-segsize=1"},
                       "initdb.log");
    try {
        const std::filesystem::path staging = dir_ / "template";
        run_as_server_user({"/bin/cp", "-a", data.string(), staging.string()}, "copy.log");
        if (::rename(staging.c_str(), cache.c_str()) != 0) {
            // Another test process published one first: keep theirs.
            std::error_code ignored;
            std::filesystem::remove_all(staging, ignored);
        }
    } catch (const std::exception&) {
        // Caching is an optimisation only.
    }
}

void PgServer::run_as_server_user(const std::vector<std::string>& argv, const std::string& log_name) const {
    // Everything the child needs is prepared before fork: after it only async-signal-safe calls are allowed.
    std::vector<char*> args;
    for (const auto& arg : argv) {
        args.push_back(const_cast<char*>(arg.c_str()));
    }
    args.push_back(nullptr);
    const std::string log_path = (dir_ / log_name).string();
    const passwd* user = ::geteuid() == 0 ? ::getpwnam(kServerUser) : nullptr;
    const uid_t uid = user != nullptr ? user->pw_uid : 0;
    const gid_t gid = user != nullptr ? user->pw_gid : 0;

    const pid_t pid = ::fork();
    if (pid < 0) {
        throw std::runtime_error("test PostgreSQL: fork: " + std::string(std::strerror(errno)));
    }
    if (pid == 0) {
        if (user != nullptr && (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0)) {
            ::_exit(126);
        }
        const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (log >= 0) {
            ::dup2(log, STDOUT_FILENO);
            ::dup2(log, STDERR_FILENO);
        }
        const int null = ::open("/dev/null", O_RDONLY);
        if (null >= 0) {
            ::dup2(null, STDIN_FILENO);
        }
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            throw std::runtime_error("test PostgreSQL: waitpid: " + std::string(std::strerror(errno)));
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::string message = "test PostgreSQL: " + argv[0] + " failed";
        message += "\n" + read_log(log_path);
        if (log_name == "pg_ctl_start.log") {
            message += "\n" + read_log(dir_ / "server.log");
        }
        throw std::runtime_error(message);
    }
}

}  // namespace vigie::db::testing
