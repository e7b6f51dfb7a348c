#include "dataplane/snapshot_store.h"

#include <google/protobuf/util/json_util.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/log.h"
#include "common/private_files.h"

namespace corral::dataplane {

absl::StatusOr<corral::v1::Snapshot> ReadSnapshotFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot open snapshot file " + path);
  std::stringstream text;
  text << in.rdbuf();
  corral::v1::Snapshot snapshot;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(text.str(), &snapshot, options);
  if (!status.ok()) {
    // Not even JSON (empty, cut short, garbage): whatever wrote it did not finish, or the disk
    // lost it. A JSON text that is not a snapshot (a typo in a hand-written file) is the
    // operator's to fix, and says so differently.
    if (!nlohmann::json::accept(text.str())) {
      return absl::DataLossError("snapshot file " + path + " is torn or damaged (" +
                                 std::to_string(text.str().size()) +
                                 " bytes that are not a whole JSON document)");
    }
    return absl::InvalidArgumentError("snapshot file " + path +
                                      " is not a valid snapshot: " + status.ToString());
  }
  return snapshot;
}

absl::Status WriteSnapshotFile(const std::string& path, const corral::v1::Snapshot& snapshot) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  const auto status = google::protobuf::util::MessageToJsonString(snapshot, &json, options);
  if (!status.ok()) return absl::InternalError("cannot encode snapshot: " + status.ToString());
  return WriteFileAtomically(path, json);
}

SnapshotStore::SnapshotStore(std::string persist_path) : persist_path_(std::move(persist_path)) {}

absl::Status SnapshotStore::Apply(corral::v1::Snapshot snapshot, std::string source) {
  return ApplyInternal(std::move(snapshot), std::move(source), /*persist=*/true);
}

absl::Status SnapshotStore::LoadFile(const std::string& path) {
  auto snapshot = ReadSnapshotFile(path);
  if (!snapshot.ok()) return snapshot.status();
  // Rewriting the file just read would only churn it; a different persist path still gets it.
  return ApplyInternal(*std::move(snapshot), "file:" + path, path != persist_path_);
}

absl::Status SnapshotStore::ApplyInternal(corral::v1::Snapshot snapshot, std::string source,
                                          bool persist) {
  std::lock_guard<std::mutex> apply_lock(apply_mu_);
  const uint64_t served = version();
  if (Current() != nullptr && snapshot.version() < served) {
    return absl::FailedPreconditionError("snapshot version " + std::to_string(snapshot.version()) +
                                         " is older than the served version " +
                                         std::to_string(served));
  }
  corral::v1::Snapshot copy;
  if (persist && !persist_path_.empty()) copy = snapshot;
  auto table = RoutingTable::Build(std::move(snapshot));
  if (!table.ok()) {
    return absl::InvalidArgumentError("snapshot rejected: " +
                                      std::string(table.status().message()));
  }
  const uint64_t version = (*table)->version();
  {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = *std::move(table);
    source_ = source;
  }
  CORRAL_LOG(kInfo, "snapshot") << "serving snapshot version " << version << " from " << source;
  if (persist && !persist_path_.empty()) {
    const auto written = WriteSnapshotFile(persist_path_, copy);
    if (!written.ok()) {
      CORRAL_LOG(kWarn, "snapshot") << "on-disk copy not written: " << written.message();
    }
  }
  return absl::OkStatus();
}

std::shared_ptr<const RoutingTable> SnapshotStore::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

uint64_t SnapshotStore::version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_ ? current_->version() : 0;
}

std::string SnapshotStore::source() const {
  std::lock_guard<std::mutex> lock(mu_);
  return source_;
}

}  // namespace corral::dataplane
