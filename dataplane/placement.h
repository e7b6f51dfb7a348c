// Placement: the nodes one model may go to, from the snapshot's rules (docs/routing.md
// "Placement"). Computed once per model when a snapshot's routing table is built, never on the
// request path.
//
//  * Memory fit: a node with max_memory_gb > 0 takes a model only when the model's memory fits
//    in it (GB = 2^30 bytes). The model's memory: the largest size_vram any node's /api/ps
//    reports for it; else the first Snapshot.model_memory rule whose pattern matches it; else
//    the largest size any node's /api/tags lists. Unknown memory fits everywhere, and a node
//    where the model is loaded fits it by definition.
//  * Hard rules: the first hard rule whose pattern matches the model limits it to the nodes it
//    names or that carry every label it lists.
//  * Soft rules: nodes named by (or carrying the labels of) any matching soft rule are
//    preferred: they come first in the list, the others stay allowed.
//
// Thread safety: pure functions, safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "corral/v1/snapshot.pb.h"

namespace corral::dataplane {

// What the nodes say about one model's size (bytes; 0 = not reported).
struct ModelSizes {
  int64_t vram = 0;  // largest size_vram among the nodes that have it loaded
  int64_t disk = 0;  // largest /api/tags size among the nodes that list it
};

struct ModelPlacement {
  // Indexes into the snapshot's nodes the model may go to: preferred ones first, each part in
  // snapshot order.
  std::vector<size_t> nodes;
  size_t preferred = 0;      // nodes[0, preferred) are preferred by a soft rule
  int64_t memory_bytes = 0;  // the model's memory as placement judged it; 0 = unknown
  // Empty when `nodes` is not; else why no node that lists the model may take it, in words
  // for the client ("needs 40.0 GB, more than any node's max_memory_gb").
  std::string refusal;
};

// The model's memory in bytes by the rule above; 0 when nothing says.
int64_t ModelMemoryBytes(const corral::v1::Snapshot& snapshot, std::string_view key,
                         const ModelSizes& sizes);

// Where model `key` (canonical) may go among `listed` (indexes into snapshot.nodes() of the
// nodes that have it, in snapshot order); `loaded[i]` says whether listed[i] has it loaded.
ModelPlacement PlaceModel(const corral::v1::Snapshot& snapshot, std::string_view key,
                          const std::vector<size_t>& listed, const std::vector<bool>& loaded,
                          const ModelSizes& sizes);

}  // namespace corral::dataplane
