// Messages between the supervisor (host side) and the sandbox's init over a
// SOCK_SEQPACKET pair: one message per write, so boundaries survive.
#pragma once

#include <sys/ioctl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "util/fd.h"
#include "util/result.h"

namespace airlock::sandbox {

// supervisor -> init, once the uid/gid maps are written.
struct GoMessage {
  uint8_t use_pty = 0;
  uint8_t have_winsize = 0;
  struct winsize ws {};
};

// supervisor -> init, while init builds the root: the placeholders exist
// ('P'), then init is in its cgroup ('L').
struct PhaseMessage {
  char phase = 0;
  uint8_t ok = 0;             // 0: the supervisor failed; init stops
  uint8_t cgroup_pids = 0;    // the cgroup holds the process count (no RLIMIT_NPROC)
  uint8_t cgroup_memory = 0;  // the cgroup holds memory (no RLIMIT_DATA)
};

enum class MsgType : uint8_t {
  Error = 'E',   // text: setup failed; init exits 125
  Ready = 'R',   // setup done; with use_pty, the pty master rides along (SCM_RIGHTS)
  Status = 'S',  // the command's wait status (int) as init saw it
};

Status send_msg(int sock, MsgType type, const std::string& payload, const std::vector<int>& pass_fds = {});

struct Msg {
  MsgType type;
  std::string payload;
  std::vector<UniqueFd> fds;  // received descriptors, in order
};
// Returns an error on EOF (peer gone) as well.
Result<Msg> recv_msg(int sock);

}  // namespace airlock::sandbox
