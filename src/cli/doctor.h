#pragma once

namespace airlock::cli {

// airlock doctor: what this machine supports, which layers airlock run
// enforces here, and a real trial run. Exit 0 when the default policy is
// enforced in full, 1 otherwise (with the fix).
int doctor(const char* self);

}  // namespace airlock::cli
