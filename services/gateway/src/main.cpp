// The gateway: the only public entry of Vigie. `gateway serve` (default) runs it. Configuration comes from the
// environment: the settings every service shares (docs/configuration.md) and those listed in gateway_config.hpp.
#include <iostream>

#include "gateway.hpp"
#include "kit/service/service.hpp"

namespace {

namespace asio = boost::asio;
using namespace vigie;

constexpr const char* kUsage = R"(usage: gateway [serve | --help]
  serve    run the API gateway (default)
)";

int serve(const config::Env& env) {
    auto service_config = service::ServiceConfig::from_env(env, "gateway", 8080, 9080);
    auto config = gateway::GatewayConfig::from_env(env);
    auto verifier = auth::TokenVerifier::from_pem_file(config.jwt_public_key_file, config.jwt_issuer);

    service::Service service(service_config);
    gateway::Gateway gateway(service.io().get_executor(), config, std::move(verifier), &service.tracer());
    gateway.add_routes(service.api());
    service.add_readiness_check(
        "user_upstream", [&gateway]() -> asio::awaitable<bool> { co_return gateway.users().healthy_count() > 0; });
    service.add_readiness_check(
        "order_upstream", [&gateway]() -> asio::awaitable<bool> { co_return gateway.orders().healthy_count() > 0; });
    gateway.start();
    service.start();
    return service.run();
}

}  // namespace

int main(int argc, char** argv) {
    std::string command = argc > 1 ? argv[1] : "serve";
    try {
        auto env = vigie::config::Env::process();
        if (command == "serve") {
            return serve(env);
        }
        if (command == "--help" || command == "-h") {
            std::cout << kUsage;
            return 0;
        }
        std::cerr << "gateway: unknown command '" << command << "'\n" << kUsage;
        return 2;
    } catch (const vigie::config::ConfigError& e) {
        std::cerr << "gateway: configuration error: " << e.what() << '\n';
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "gateway: " << e.what() << '\n';
        return 1;
    }
}
