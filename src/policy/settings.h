// Settings: the untrusted JSON text, parsed and type-checked against one
// table of keys (settings_keys()). The same table produces the docs table and
// the unknown-key errors, so code and docs cannot drift apart.
//
// Settings are plain data with no paths resolved: turning them into a
// Policy is policy.h's job.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/result.h"

namespace airlock::policy {

enum class KeyType {
  Bool,
  Int,
  String,
  StringList,
  PathList,  // strings or {"path": "...", "literal": true}
  Object,    // its own keys are listed in the table
  Opaque,    // JSON checked for shape by the subsystem that owns it
};

enum class KeyStatus {
  Enforced,      // airlock enforces it today
  NoEffect,      // accepted for srt compatibility; means nothing on Linux/airlock
  Planned,       // parsed and checked; its layer is not built yet
};

struct KeySpec {
  const char* key;  // dotted path, e.g. "filesystem.denyRead"
  KeyType type;
  const char* origin;  // "srt" or "airlock"
  KeyStatus status;
  const char* doc;
};

const std::vector<KeySpec>& settings_keys();

// The markdown table of every key (docs/settings.md embeds it; a test checks).
std::string settings_table_markdown();

struct PathSpec {
  std::string raw;      // as written
  bool literal = false;  // no glob expansion
  std::string where;    // "FILE: filesystem.denyRead[2]" for error messages
};

struct Settings {
  std::string source;  // file name, or "built-in default" / "command line"
  std::vector<PathSpec> deny_read, allow_read, allow_write, deny_write, no_delete;
  std::optional<bool> allow_git_config;
  std::optional<int> protect_depth;  // mandatoryDenySearchDepth
  std::optional<bool> allow_nested_userns;
  std::vector<PathSpec> allow_unix_sockets;     // network.allowUnixSockets
  std::optional<bool> allow_all_unix_sockets;   // network.allowAllUnixSockets
  // limits.*: key name -> value, as written.
  std::vector<std::pair<std::string, uint64_t>> limits;
  std::optional<bool> fs_disabled;
  std::vector<std::string> env_keep;    // environment.keep
  std::vector<std::string> env_remove;  // environment.remove
  bool has_network = false;
  nlohmann::json network;      // checked for shape here; net::build_network_policy checks the rest
  std::string audit_file;      // audit.file, as written
  nlohmann::json credentials;  // likewise
  std::vector<std::string> not_enforced;  // keys present that airlock does not enforce yet
};

// Largest settings file airlock will read, and deepest nesting it accepts.
inline constexpr size_t kMaxSettingsBytes = 1 << 20;
inline constexpr int kMaxSettingsDepth = 32;

Result<Settings> parse_settings(const std::string& text, const std::string& source);
Result<Settings> load_settings_file(const std::string& path);

}  // namespace airlock::policy
