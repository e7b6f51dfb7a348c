// SnapshotStore: the routing snapshot a proxy serves right now, and its on-disk copy.
//
// Every snapshot, whether read from a file at start, reloaded on SIGHUP or pushed by the
// control plane, goes through Apply: it is validated and indexed (RoutingTable::Build), refused
// if older than the one served, then swapped in atomically. Readers take Current() once per
// request and keep that shared_ptr for the request's whole life, so a swap never changes a
// request's view half-way. An accepted snapshot is written to the persist path (protobuf JSON,
// mode 0600 since it holds token hashes; temp file, fsync, rename, fsync of the directory) so a
// restarted proxy serves at once without the control plane, and a power cut leaves either the
// old copy or the new one. A file that does not parse (torn by a crash of an older version, or
// damaged on disk) is DataLoss, apart from a missing file (NotFound) and a well-formed snapshot
// that fails validation (InvalidArgument), so the caller can wait for the control plane instead.
//
// Thread safety: every method is safe from any thread. Apply calls are serialised; Current is
// a short lock and a shared_ptr copy.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/v1/snapshot.pb.h"
#include "dataplane/routing_table.h"

namespace corral::dataplane {

// Reads a snapshot in protobuf's JSON form (unknown fields rejected). NotFound when the file
// cannot be opened; DataLoss when its content is not a snapshot (torn, truncated, empty).
absl::StatusOr<corral::v1::Snapshot> ReadSnapshotFile(const std::string& path);
// Writes a snapshot in protobuf's JSON form, mode 0600, atomically and durably (temp file,
// fsync, rename, fsync of the directory).
absl::Status WriteSnapshotFile(const std::string& path, const corral::v1::Snapshot& snapshot);

class SnapshotStore {
 public:
  // `persist_path`: where accepted snapshots are written; empty = nowhere.
  explicit SnapshotStore(std::string persist_path = "");

  // Validates, builds and swaps in `snapshot`. Refuses (keeping the served one) an invalid
  // snapshot (InvalidArgument) or one older than the served version (FailedPrecondition). The
  // same version is accepted again (a control plane that restarts resends it). `source` says
  // where it came from ("file:/path", "control:host:port") for logs and /api/proxy/state.
  // A failure to write the on-disk copy is logged, not returned: the snapshot is served anyway.
  absl::Status Apply(corral::v1::Snapshot snapshot, std::string source);

  // Reads `path` and applies it with source "file:<path>". The file is not rewritten. Errors as
  // ReadSnapshotFile (NotFound, DataLoss) and Apply (InvalidArgument, FailedPrecondition).
  absl::Status LoadFile(const std::string& path);

  // The table served now; null before the first snapshot.
  std::shared_ptr<const RoutingTable> Current() const;
  uint64_t version() const;
  std::string source() const;
  const std::string& persist_path() const { return persist_path_; }

 private:
  absl::Status ApplyInternal(corral::v1::Snapshot snapshot, std::string source, bool persist);

  const std::string persist_path_;
  std::mutex apply_mu_;    // serialises Apply (validation, version check, disk write)
  mutable std::mutex mu_;  // guards current_ and source_
  std::shared_ptr<const RoutingTable> current_;
  std::string source_;
};

}  // namespace corral::dataplane
