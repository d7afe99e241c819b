#include "util/sys.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace airlock::sys {

Result<UniqueFd> openat2(int dirfd, const std::string& path, int flags, unsigned long long resolve,
                         mode_t mode) {
  struct open_how how {};
  how.flags = static_cast<unsigned long long>(flags) | O_CLOEXEC;
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = resolve;
  for (;;) {
    long fd = ::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof(how));
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    if (errno == EINTR || errno == EAGAIN) continue;  // EAGAIN: a rename raced the lookup
    return sys_err(fmt::format("openat2({})", path));
  }
}

Result<UniqueFd> open_path_nofollow(const std::string& abs_path, int extra_flags) {
  if (abs_path.empty() || abs_path[0] != '/')
    return err("internal: path is not absolute: {}", abs_path);
  return openat2(AT_FDCWD, abs_path, O_PATH | O_NOFOLLOW | extra_flags,
                 RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

Result<UniqueFd> open_beneath(int root_fd, const std::string& rel, int flags) {
  std::string r = rel;
  while (!r.empty() && r[0] == '/') r.erase(0, 1);
  if (r.empty()) r = ".";
  return openat2(root_fd, r, flags | O_NOFOLLOW,
                 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

int pivot_root(const char* new_root, const char* put_old) {
  return static_cast<int>(::syscall(SYS_pivot_root, new_root, put_old));
}

Status write_file(const std::string& path, const std::string& data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return sys_err(fmt::format("open({})", path));
  if (!write_all(fd.get(), data.data(), data.size()))
    return sys_err(fmt::format("write({})", path));
  return {};
}

Result<std::string> read_regular_file(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!fd) return sys_err(fmt::format("open({})", path));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sys_err(fmt::format("fstat({})", path));
  if (!S_ISREG(st.st_mode)) return err("{}: not a regular file", path);
  if (static_cast<size_t>(st.st_size) > max_bytes) return err("{}: larger than {} bytes", path, max_bytes);
  std::string out(static_cast<size_t>(st.st_size), '\0');
  ssize_t n = ::pread(fd.get(), out.data(), out.size(), 0);
  if (n < 0) return sys_err(fmt::format("read({})", path));
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> read_file(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_err(fmt::format("open({})", path));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_err(fmt::format("read({})", path));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) return err("{}: file is larger than {} bytes", path, max_bytes);
  }
  return out;
}

void close_all_except(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned from = 3;
  for (int k : keep) {
    if (k < 3) continue;
    if (static_cast<unsigned>(k) > from) ::syscall(SYS_close_range, from, static_cast<unsigned>(k - 1), 0U);
    from = static_cast<unsigned>(k) + 1;
  }
  ::syscall(SYS_close_range, from, ~0U, 0U);
}

bool write_all(int fd, const void* buf, size_t len) {
  const char* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

bool read_exact(int fd, void* buf, size_t len) {
  char* p = static_cast<char*>(buf);
  while (len > 0) {
    ssize_t n = ::read(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace airlock::sys
