// Fuzzes snapshot validation on snapshots read from protobuf JSON, as a proxy reads its
// --snapshot-file (dataplane/snapshot_store.cc): JsonStringToMessage, then RoutingTable::Build.
#include <google/protobuf/util/json_util.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/snapshot_checks.h"
#include "google/protobuf/stubs/logging.h"

// Malformed input is the point here; protobuf's log line per bad UTF-8 string is noise.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  corral::v1::Snapshot snapshot;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  if (!google::protobuf::util::JsonStringToMessage(text, &snapshot, options).ok()) return 0;
  corral::fuzz::CheckSnapshot(snapshot);

  // What the proxy writes back must read back as the same snapshot.
  std::string written;
  FUZZ_CHECK(google::protobuf::util::MessageToJsonString(snapshot, &written).ok(),
             "a parsed snapshot cannot be written as JSON");
  corral::v1::Snapshot reread;
  FUZZ_CHECK(google::protobuf::util::JsonStringToMessage(written, &reread, options).ok(),
             "written JSON does not parse: %s", written.c_str());
  FUZZ_CHECK(reread.nodes_size() == snapshot.nodes_size() &&
                 corral::dataplane::ValidateSnapshot(reread) ==
                     corral::dataplane::ValidateSnapshot(snapshot),
             "JSON round trip changed the snapshot: %s", written.c_str());
  return 0;
}
