#include "sandbox/protocol.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace airlock::sandbox {

Status send_msg(int sock, MsgType type, const std::string& payload, const std::vector<int>& pass_fds) {
  std::string buf(1, static_cast<char>(type));
  buf += payload;
  struct iovec iov {buf.data(), buf.size()};
  struct msghdr mh {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(struct cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * 4)] = {};
  if (pass_fds.size() > 4) return err("internal: too many descriptors for one message");
  if (!pass_fds.empty()) {
    mh.msg_control = ctl;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * pass_fds.size());
    struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * pass_fds.size());
    std::memcpy(CMSG_DATA(c), pass_fds.data(), sizeof(int) * pass_fds.size());
  }
  for (;;) {
    if (::sendmsg(sock, &mh, MSG_NOSIGNAL) >= 0) return {};
    if (errno != EINTR) return sys_err("sendmsg(supervisor channel)");
  }
}

Result<Msg> recv_msg(int sock) {
  char buf[4096];
  struct iovec iov {buf, sizeof buf};
  struct msghdr mh {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(struct cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * 4)] = {};
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof ctl;
  ssize_t n;
  do n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return sys_err("recvmsg(supervisor channel)");
  if (n == 0) return err("the sandbox ended before reporting");
  Msg m;
  m.type = static_cast<MsgType>(buf[0]);
  m.payload.assign(buf + 1, static_cast<size_t>(n - 1));
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < n; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        m.fds.emplace_back(fd);
      }
    }
  }
  return m;
}

}  // namespace airlock::sandbox
