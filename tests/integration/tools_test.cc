// Everyday tools work inside the default sandbox: the filter and the mount
// plan must not break ordinary development work.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <thread>

#include "harness.h"

namespace airlock::test {

TEST(Tools, ShellCoreutilsPythonGitCompilerMake) {
  SandboxFixture fx;
  auto r = fx.sh(
      "set -e\n"
      "ls -la >/dev/null; cp README.md r2; sort r2 | uniq | wc -l; sed -i s/project/changed/ r2; grep -q changed r2\n"
      "/usr/bin/python3 -c 'import os, json, subprocess, threading; print(json.dumps({\"pid\": os.getpid() > 0}))'\n"
      "git init -q repo && cd repo && echo hi > a && git add a && "
      "git -c user.email=a@b -c user.name=a commit -qm one && git log --oneline | wc -l && cd ..\n"
      "printf '#include <stdio.h>\\nint main(){puts(\"compiled\");return 0;}\\n' > m.c\n"
      "printf 'all: m\\nm: m.c\\n\\tcc -O1 -o m m.c\\n' > Makefile && make -s && ./m\n"
      "(sleep 0.1 &) ; wait; echo background-ok\n"
      "/usr/bin/python3 -c 'import socket; a,b=socket.socketpair(); a.send(b\"x\"); print(\"socketpair\", b.recv(1))'\n");
  EXPECT_EQ(r.code, 0) << r.err;
  for (const char* s : {"{\"pid\": true}", "compiled", "background-ok", "socketpair b'x'"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out << r.err;
  EXPECT_EQ(r.err.find("refused syscall"), std::string::npos) << r.err;
}

TEST(Tools, LocalUnixSocketsAmongOwnProcessesWork) {
  SandboxFixture fx;
  auto r = fx.sh(
      "/usr/bin/python3 - <<'EOF'\n"
      "import socket, os\n"
      "s = socket.socket(socket.AF_UNIX); s.bind('/tmp/own.sock'); s.listen(1)\n"
      "if os.fork() == 0:\n"
      "    c = socket.socket(socket.AF_UNIX); c.connect('/tmp/own.sock'); c.send(b'hello'); os._exit(0)\n"
      "conn, _ = s.accept(); print(conn.recv(5).decode())\n"
      "EOF\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "hello\n");
}

// A host socket is unreachable unless the settings expose it by path.
TEST(Tools, HostSocketOnlyWhenExposed) {
  SandboxFixture fx;
  std::string path = fx.tree.path("host.sock");
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa {};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(s, 8), 0);
  ::chmod(path.c_str(), 0777);
  // Outside the workspace, under /var/tmp: visible read-only, so hide it the
  // way a user would, then expose it explicitly.
  fx.tree.write("deny.json", "{\"filesystem\": {\"denyRead\": [\"" + path + "\"]}}");
  auto hidden = fx.run({probe_bin(), "connect-unix", path}, {"--settings", fx.tree.path("deny.json")});
  EXPECT_EQ(hidden.out.rfind("ERR", 0), 0u) << hidden.out;
  fx.tree.write("allow.json", "{\"network\": {\"allowUnixSockets\": [\"" + path + "\"]}}");
  auto shown = fx.run({probe_bin(), "connect-unix", path}, {"--settings", fx.tree.path("allow.json")});
  EXPECT_EQ(shown.out, "OK\n") << shown.err;
  ::close(s);
}

TEST(Tools, HostRunSocketsAreHiddenByDefault) {
  SandboxFixture fx;
  auto r = fx.sh("ls -A /run | wc -l");
  EXPECT_EQ(r.out, "0\n");
}

}  // namespace airlock::test
