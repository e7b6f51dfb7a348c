// LiveRequests: the requests corral-proxy is serving now, for GET /api/proxy/active-requests
// (seed_routes.h). A request that goes to a node (inference, node-local) joins when the front
// door admits its head and leaves when its ticket ends: the handler returned and any answer a
// relay carried on has ended. Its request record (request_record.h) stays the one account of the
// request: the registry reads the fields the front door set before the request joined (id,
// method, route, client, token, start), which nobody writes again, and keeps its own copy of
// what the request path sets later (the model and the node now tried), which the thread filling
// the record hands over with Update. A request whose record is finished is no longer listed.
//
// Entries are intrusive (each lives in its request's Admitted ticket): joining and leaving cost
// one uncontended lock of one shard of sixteen and no allocation, so the request path pays
// almost nothing for a view that is read rarely.
//
// Thread safety: Add, Update and List are safe from any thread; an Entry leaves (its
// destructor) from whichever thread drops the ticket. Update must be called by the thread that
// fills the entry's record at that moment.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "dataplane/request_record.h"

namespace corral::dataplane {

class LiveRequests {
 public:
  // One request's place in the registry. Neither copied nor moved: it is linked by address.
  class Entry {
   public:
    Entry() = default;
    ~Entry();
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;

   private:
    friend class LiveRequests;
    LiveRequests* owner_ = nullptr;  // null until Add
    size_t shard_ = 0;
    const RequestRecord* record_ = nullptr;
    const RecordHandle* handle_ = nullptr;
    // Guarded by the shard's mutex for readers; written only by the thread filling the record.
    std::string model_;
    std::string node_;
    Entry* prev_ = nullptr;
    Entry* next_ = nullptr;
  };

  // What the view shows of one request.
  struct Row {
    std::string request_id;
    std::string method;
    std::string route;
    std::string model;  // as the client sent it; "" until the body was read
    std::string node;   // the node tried now (or that answers); "" before one was chosen
    std::string client;
    std::string token;  // the inference token's name; "" in an open fleet
    RequestRecord::Clock::time_point start;
  };

  LiveRequests() = default;
  LiveRequests(const LiveRequests&) = delete;
  LiveRequests& operator=(const LiveRequests&) = delete;

  // Lists `entry` for the request of `handle` until the entry is destroyed.
  // REQUIRES: the record's id, method, route, client and token are set and no longer change;
  // `handle` outlives `entry`; `entry` is not listed yet.
  void Add(Entry& entry, const RecordHandle& handle, const RequestRecord& record);

  // Copies the record's model and current node into the entry (a no-op when unchanged or when
  // the entry is not listed). REQUIRES: called by the thread filling the record.
  static void Update(Entry& entry);

  // Every listed request whose record is not finished, oldest first.
  std::vector<Row> List() const;

 private:
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable std::mutex mu;
    Entry* head = nullptr;  // guarded by mu
  };

  void Remove(Entry& entry);

  std::array<Shard, kShards> shards_;
};

}  // namespace corral::dataplane
