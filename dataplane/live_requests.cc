#include "dataplane/live_requests.h"

#include <algorithm>
#include <cstdint>

namespace corral::dataplane {

LiveRequests::Entry::~Entry() {
  if (owner_ != nullptr) owner_->Remove(*this);
}

void LiveRequests::Add(Entry& entry, const RecordHandle& handle, const RequestRecord& record) {
  // Entries live in separately allocated tickets: their addresses spread them over the shards.
  const size_t shard = (reinterpret_cast<uintptr_t>(&entry) >> 6) % kShards;
  entry.owner_ = this;
  entry.shard_ = shard;
  entry.record_ = &record;
  entry.handle_ = &handle;
  Shard& s = shards_[shard];
  std::lock_guard<std::mutex> lock(s.mu);
  entry.prev_ = nullptr;
  entry.next_ = s.head;
  if (s.head != nullptr) s.head->prev_ = &entry;
  s.head = &entry;
}

void LiveRequests::Remove(Entry& entry) {
  Shard& s = shards_[entry.shard_];
  std::lock_guard<std::mutex> lock(s.mu);
  if (entry.prev_ != nullptr) {
    entry.prev_->next_ = entry.next_;
  } else {
    s.head = entry.next_;
  }
  if (entry.next_ != nullptr) entry.next_->prev_ = entry.prev_;
  entry.prev_ = entry.next_ = nullptr;
  entry.owner_ = nullptr;
}

void LiveRequests::Update(Entry& entry) {
  if (entry.owner_ == nullptr) return;
  const RequestRecord& record = *entry.record_;
  static const std::string kNoNode;
  const std::string& node = record.attempts.empty() ? kNoNode : record.attempts.back().node;
  // This thread is the entries' only writer: it may compare without the lock.
  if (entry.model_ == record.model && entry.node_ == node) return;
  std::lock_guard<std::mutex> lock(entry.owner_->shards_[entry.shard_].mu);
  entry.model_ = record.model;
  entry.node_ = node;
}

std::vector<LiveRequests::Row> LiveRequests::List() const {
  std::vector<Row> rows;
  for (const Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    for (const Entry* e = s.head; e != nullptr; e = e->next_) {
      if (e->handle_->finished()) continue;
      const RequestRecord& r = *e->record_;
      rows.push_back(Row{r.request_id, r.method, r.route, e->model_, e->node_, r.client_address,
                         r.token_name, r.start});
    }
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.start != b.start ? a.start < b.start : a.request_id < b.request_id;
  });
  return rows;
}

}  // namespace corral::dataplane
