// Fuzzes snapshot validation on snapshots read from the protobuf wire format, as a proxy
// receives them from corral-control's Watch stream: ParseFromString, then RoutingTable::Build.
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
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  corral::v1::Snapshot snapshot;
  if (!snapshot.ParseFromString(bytes)) return 0;
  corral::fuzz::CheckSnapshot(snapshot);

  // Serialising and parsing again must give a snapshot that validates the same way.
  corral::v1::Snapshot reparsed;
  FUZZ_CHECK(reparsed.ParseFromString(snapshot.SerializeAsString()), "re-serialised snapshot");
  FUZZ_CHECK(corral::dataplane::ValidateSnapshot(reparsed) ==
                 corral::dataplane::ValidateSnapshot(snapshot),
             "a wire round trip changed validation");
  return 0;
}
