// Thin, checked wrappers over the kernel interfaces glibc 2.36 does not wrap
// (openat2, pivot_root, clone3), plus small file helpers used on both sides of
// the sandbox. Each returns a Result whose error names the call and the path.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "util/fd.h"
#include "util/result.h"

namespace airlock::sys {

// openat2(2) with the given open flags and RESOLVE_* flags.
Result<UniqueFd> openat2(int dirfd, const std::string& path, int flags, unsigned long long resolve,
                         mode_t mode = 0);

// Opens an absolute, already-canonical path as O_PATH without following any
// symlink on the way: if a component was swapped for a symlink since the
// policy was resolved, this fails (ELOOP) instead of being redirected.
Result<UniqueFd> open_path_nofollow(const std::string& abs_path, int extra_flags = 0);

// Same, rooted at `root_fd`: `rel` may not escape the root (RESOLVE_BENEATH).
Result<UniqueFd> open_beneath(int root_fd, const std::string& rel, int flags);

int pivot_root(const char* new_root, const char* put_old);

// Writes `data` to a file that must already exist (procfs, sysfs).
Status write_file(const std::string& path, const std::string& data);

// Reads a file that someone else may control (a repository's git files):
// only a regular file, opened without blocking (a FIFO would hang the
// reader), at most max_bytes (else an error). Symlinks are followed.
Result<std::string> read_regular_file(const std::string& path, size_t max_bytes = 1 << 20);

// Reads a whole small file.
Result<std::string> read_file(const std::string& path, size_t max_bytes = 1 << 20);

// Closes every descriptor from 3 up except those in `keep` (close_range).
void close_all_except(std::vector<int> keep);

// Writes all of buf to fd, retrying on EINTR/short writes.
bool write_all(int fd, const void* buf, size_t len);
// Reads exactly len bytes; false on EOF or error.
bool read_exact(int fd, void* buf, size_t len);

}  // namespace airlock::sys
