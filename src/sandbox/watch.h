// Watches, from the host, the mount points that protect paths inside
// writable folders (see fs::Plan::watch). A host process that deletes or
// renames over one (an editor's atomic save, `git config` rewriting
// .git/config) silently takes the sandbox's mount away with it.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "util/fd.h"
#include "util/result.h"

namespace airlock::sandbox {

class MountWatch {
 public:
  static Result<MountWatch> start(const std::vector<std::string>& paths);
  int fd() const { return fd_.get(); }
  // Reads pending events; returns the first protected path that was
  // removed or replaced, or "" if none was.
  std::string check();

  // Releasing an inotify instance waits for an SRCU grace period (~20 ms
  // here). A small helper takes over the last reference and releases it
  // after airlock has exited, off the caller's critical path.
  void release_later();

 private:
  UniqueFd fd_;
  std::map<int, std::string> dirs_;                  // watch descriptor -> folder
  std::map<std::string, std::set<std::string>> names_;  // folder -> protected names in it
};

}  // namespace airlock::sandbox
