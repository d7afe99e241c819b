// Path arithmetic and symlink resolution. Every path in a policy goes
// through resolve() before it is judged, so a symlink in the workspace can
// neither hide a denied file nor widen a writable one.
#pragma once

#include <string>
#include <vector>

#include "util/result.h"

namespace airlock::fs {

// The non-empty pieces of s between separators.
std::vector<std::string> split_on(const std::string& s, char sep);

// Lexical normalisation of an absolute path: "//" and "." dropped, ".."
// pops (never above "/"). No filesystem access.
std::string normalize(const std::string& abs);

// "~" and "~/x" expand to home; a relative path is taken relative to base.
std::string absolutize(const std::string& raw, const std::string& home, const std::string& base);

// True if path is dir or lies beneath it (both normalised, absolute).
bool is_within(const std::string& path, const std::string& dir);

// Number of components: "/" is 0, "/a/b" is 2.
int depth(const std::string& abs);

// Parent of a normalised absolute path ("/" for "/a").
std::string parent(const std::string& abs);

// Path of `abs` relative to `dir` (abs must be within dir); "" when equal.
std::string relative_to(const std::string& abs, const std::string& dir);

struct Resolved {
  std::string path;       // every existing component resolved, missing rest appended
  bool exists = false;
  bool is_dir = false;
  std::string first_missing;  // the first component that does not exist ("" if exists)
};

// Resolves symlinks component by component (lstat + readlink, at most 40
// links), like realpath(3) but also for paths whose tail does not exist yet.
Result<Resolved> resolve(const std::string& abs);

// True if the string has glob characters (*, ?, [).
bool has_glob(const std::string& s);

// Expands a glob pattern against the filesystem (glob(3)); no matches -> {}.
std::vector<std::string> expand_glob(const std::string& pattern);

}  // namespace airlock::fs
