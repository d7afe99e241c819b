#pragma once
#include <string>

namespace airlock::cli {
// `airlock connect [--port N] HOST PORT` (ssh ProxyCommand inside the sandbox).
int connect_main(const std::string& host, int port, int proxy_port);
}  // namespace airlock::cli
