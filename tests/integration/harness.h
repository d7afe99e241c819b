// Test harness: runs the real airlock binary as a child process, with a
// throw-away workspace and fake home under /var/tmp, and captures what
// happened. No mocks: every test goes through real namespaces.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace airlock::test {

struct RunResult {
  int code = -1;  // exit status (128+N for signal N), -1 if it timed out
  std::string out, err;
};

struct RunOptions {
  std::string cwd;
  std::map<std::string, std::string> env;  // added/overridden variables
  std::string stdin_data;
  int timeout_ms = 20000;
};

// Runs a program with arguments; stdout/stderr captured.
RunResult run_program(const std::vector<std::string>& argv, const RunOptions& o = {});

// A fresh folder tree under /var/tmp, removed (recursively, without
// following symlinks) at destruction.
class TempTree {
 public:
  TempTree();
  ~TempTree();
  TempTree(const TempTree&) = delete;
  TempTree& operator=(const TempTree&) = delete;
  const std::string& root() const { return root_; }
  std::string path(const std::string& rel) const { return root_ + "/" + rel; }
  void write(const std::string& rel, const std::string& content) const;  // makes parents
  void mkdir(const std::string& rel) const;
  std::string read(const std::string& rel) const;
  bool exists(const std::string& rel) const;

 private:
  std::string root_;
};

// A typical setup: <root>/home with secrets, <root>/ws as the workspace.
class SandboxFixture {
 public:
  SandboxFixture();
  TempTree tree;
  std::string home, ws;
  // airlock run [extra...] -c SCRIPT, cwd = ws, HOME = home.
  RunResult sh(const std::string& script, const std::vector<std::string>& extra = {},
               const RunOptions& o = {}) const;
  // airlock run [extra...] -- argv...
  RunResult run(const std::vector<std::string>& argv, const std::vector<std::string>& extra = {},
                const RunOptions& o = {}) const;
  // Files in ws (names, recursive, sorted), to prove nothing was left behind.
  std::vector<std::string> listing(const std::string& dir) const;
};

std::string airlock_bin();
std::string probe_bin();
bool is_root();

}  // namespace airlock::test
