// What the network and TLS tests share (tests/integration and
// tests/escape): sandbox runs with the caller's proxies kept out, server
// processes on the host, Python programs run inside a sandbox, audit logs,
// and a few string helpers.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.h"

namespace airlock::test {

inline constexpr const char* kPython = "/usr/bin/python3";

// ASCII lower case.
std::string lower(std::string s);

// The value after "KEY=" on a line of `out` ("" if none).
std::string value_of(const std::string& out, const std::string& key);

// Options for a sandbox run with the caller's proxy variables blanked: a
// caller's own proxy would become airlock's parent proxy.
RunOptions proxy_free_options(int timeout_ms = 60000);

// "--settings PATH", then `extra`: airlock run's options.
std::vector<std::string> settings_args(const std::string& settings_path, const std::vector<std::string>& extra = {});

// Writes `program` into the fixture's workspace as STEM-N.py and returns
// the shell command (run in the workspace) that runs it with python3.
std::string python_command(const SandboxFixture& fx, const std::string& stem, const std::string& program);

// Python defining run_all(tests, workers=`workers`): runs each test, a
// tuple (label, function, args...), in a thread pool and prints "LABEL
// RESULT" for each, in order (RESULT "exc:NAME" if the function raised).
std::string py_run_all(int workers);

// /bin/sh -c SCRIPT on the host, in `cwd` if given.
RunResult host_sh(const std::string& script, const std::string& cwd = "");

// Starts a server process on the host (argv[0] a path): stdin /dev/null,
// stdout a pipe whose reading end goes to `out`, stderr appended to
// `errlog`; it is killed should this process die. Throws if no pipe.
pid_t spawn_host_server(const std::vector<std::string>& argv, const std::string& errlog, int& out);

// Reads `fd` until what it read contains `marker`, or EOF, or `timeout`.
std::string read_until(int fd, const std::string& marker, std::chrono::milliseconds timeout);

// The audit log's lines as JSON. `strict`: a line that is not JSON fails
// the test (else it is passed over).
std::vector<nlohmann::json> audit_lines(const std::string& path, bool strict = true);
// One JSON text a line, for failure messages.
std::string dump_all(const std::vector<nlohmann::json>& v);

}  // namespace airlock::test
