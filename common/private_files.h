// Files that hold secrets or state another user must not read or change: the control plane's
// data dir (registry, admin and proxy tokens) and the proxy's on-disk snapshot (inference token
// hashes, the fleet's addresses). Directories are kept at 0700 and files at 0600 whatever the
// umask; one found looser is tightened, with a WARN naming it, because a looser mode means the
// secret may already have been read.
//
// WriteFileAtomically is the one way such a file is replaced: a reader (or a restart after a
// power cut) sees either the old content or the new, whole, never a torn mix.
//
// Thread safety: stateless functions, safe from any thread; two writers of the same path must
// be serialised by the caller (they share the temp file).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace corral {

// Creates `dir` (and its parents) if missing, with mode 0700 for `dir` itself; an existing `dir`
// with any group or other permission is set to 0700 with a WARN. `what` names it in messages
// ("data dir"). Fails only when the directory cannot be created or is not a directory; a mode
// that cannot be changed (a volume owned by another user) is a WARN, not a failure.
absl::Status EnsurePrivateDir(const std::string& dir, absl::string_view what);

// Sets an existing file with any group or other permission to 0600, with a WARN. A missing file
// is fine (nothing to protect yet). A mode that cannot be changed is a WARN.
absl::Status EnsurePrivateFile(const std::string& path, absl::string_view what);

// Replaces `path` with `content`, mode 0600: written to `path`.tmp, fsync'd, renamed over
// `path`, then the directory fsync'd so the rename itself survives a power cut.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view content);

// fsync of the directory holding `path`, which makes a rename or create in it durable.
absl::Status SyncParentDirectory(const std::string& path);

}  // namespace corral
