#include "dataplane/usage_ledger.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <tuple>
#include <utility>

namespace corral::dataplane {
namespace {

constexpr int64_t kHour = 3600;

int64_t SystemNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string RandomInstanceId() {
  std::random_device rd;
  std::mt19937_64 rng((static_cast<uint64_t>(rd()) << 32) ^ rd() ^
                      static_cast<uint64_t>(SystemNow()));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int word = 0; word < 2; ++word) {
    uint64_t v = rng();
    for (int i = 0; i < 16; ++i, v >>= 4) out.push_back(kHex[v & 0xf]);
  }
  return out;
}

// A key as one string, so a lookup needs no allocation once the thread's buffer has grown: the
// hour's 8 bytes, then token and model each behind a 2-byte length, then the node. Names are at
// most kMaxNameBytes, so the lengths fit.
void EncodeKey(int64_t hour, std::string_view token, std::string_view model, std::string_view node,
               std::string* out) {
  out->clear();
  char raw[8];
  std::memcpy(raw, &hour, sizeof(raw));
  out->append(raw, sizeof(raw));
  for (std::string_view part : {token, model}) {
    const uint16_t n = static_cast<uint16_t>(part.size());
    char len[2];
    std::memcpy(len, &n, sizeof(len));
    out->append(len, sizeof(len));
    out->append(part);
  }
  out->append(node);
}

UsageEntry DecodeKey(const std::string& key) {
  UsageEntry entry;
  size_t at = 0;
  std::memcpy(&entry.hour_start, key.data(), sizeof(entry.hour_start));
  at += sizeof(entry.hour_start);
  for (std::string* part : {&entry.token, &entry.model}) {
    uint16_t n = 0;
    std::memcpy(&n, key.data() + at, sizeof(n));
    at += sizeof(n);
    part->assign(key, at, n);
    at += n;
  }
  entry.node.assign(key, at, std::string::npos);
  return entry;
}

void AddCounts(const UsageCounts& from, UsageCounts* to) {
  to->requests += from.requests;
  to->errors += from.errors;
  to->input_tokens += from.input_tokens;
  to->output_tokens += from.output_tokens;
}

// Each thread keeps one shard for its life: threads are spread round-robin over the shards, and
// a worker thread serving many requests finds its shard's mutex uncontended unless another
// thread shares it.
size_t ThreadShard() {
  static std::atomic<size_t> next{0};
  thread_local const size_t shard = next.fetch_add(1, std::memory_order_relaxed);
  return shard % UsageLedger::kShards;
}

}  // namespace

UsageLedger::UsageLedger(UsageLedgerOptions options)
    : max_keys_(options.max_keys),
      instance_id_(options.instance_id.empty() ? RandomInstanceId()
                                               : std::move(options.instance_id)),
      now_(options.now ? std::move(options.now) : std::function<int64_t()>(SystemNow)) {}

void UsageLedger::Add(std::string_view token, std::string_view model, std::string_view node,
                      uint64_t input_tokens, uint64_t output_tokens, bool error) {
  const int64_t now = now_();
  const int64_t hour = now - (((now % kHour) + kHour) % kHour);
  UsageCounts delta;
  delta.requests = 1;
  delta.errors = error ? 1 : 0;
  delta.input_tokens = input_tokens;
  delta.output_tokens = output_tokens;

  thread_local std::string key;
  bool fold =
      token.size() > kMaxNameBytes || model.size() > kMaxNameBytes || node.size() > kMaxNameBytes;
  if (!fold) EncodeKey(hour, token, model, node, &key);

  Shard& shard = shards_[ThreadShard()];
  std::lock_guard<std::mutex> lock(shard.mu);
  if (!fold) {
    auto it = shard.counts.find(key);
    if (it != shard.counts.end()) {
      AddCounts(delta, &it->second);
      return;
    }
    if (keys_.fetch_add(1, std::memory_order_relaxed) < max_keys_) {
      AddCounts(delta, &shard.counts[key]);
      return;
    }
    keys_.fetch_sub(1, std::memory_order_relaxed);
    fold = true;
  }
  folded_.fetch_add(1, std::memory_order_relaxed);
  EncodeKey(hour, kUsageOtherName, kUsageOtherName, kUsageOtherName, &key);
  auto [it, inserted] = shard.counts.try_emplace(key);
  if (inserted) keys_.fetch_add(1, std::memory_order_relaxed);
  AddCounts(delta, &it->second);
}

UsageBatch UsageLedger::Drain() {
  std::lock_guard<std::mutex> drain_lock(drain_mu_);
  if (pending_.has_value()) return *pending_;

  // Sorted, so a batch reads the same whatever shards its counts went through.
  std::map<std::string, UsageCounts> merged;
  for (Shard& shard : shards_) {
    std::unordered_map<std::string, UsageCounts> taken;
    {
      std::lock_guard<std::mutex> lock(shard.mu);
      taken.swap(shard.counts);
    }
    keys_.fetch_sub(taken.size(), std::memory_order_relaxed);
    for (auto& [key, counts] : taken) AddCounts(counts, &merged[key]);
  }
  UsageBatch batch;
  batch.instance_id = instance_id_;
  if (merged.empty()) return batch;
  batch.sequence = ++last_sequence_;
  batch.entries.reserve(merged.size());
  for (const auto& [key, counts] : merged) {
    UsageEntry entry = DecodeKey(key);
    entry.counts = counts;
    batch.entries.push_back(std::move(entry));
  }
  std::sort(batch.entries.begin(), batch.entries.end(),
            [](const UsageEntry& a, const UsageEntry& b) {
              return std::tie(a.hour_start, a.token, a.model, a.node) <
                     std::tie(b.hour_start, b.token, b.model, b.node);
            });
  pending_ = batch;
  return batch;
}

bool UsageLedger::Ack(uint64_t sequence) {
  std::lock_guard<std::mutex> lock(drain_mu_);
  if (!pending_.has_value() || pending_->sequence != sequence) return false;
  pending_.reset();
  return true;
}

}  // namespace corral::dataplane
