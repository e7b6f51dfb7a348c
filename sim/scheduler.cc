#include "sim/scheduler.h"

#include <algorithm>

namespace corral::sim {
namespace {

// How often a waiting request looks at its client; releases wake waiters at once anyway.
constexpr auto kCancelPoll = std::chrono::milliseconds(20);

}  // namespace

void Scheduler::SetLimits(const SchedulerLimits& limits) {
  std::lock_guard<std::mutex> lock(mu_);
  limits_ = limits;
  cv_.notify_all();
}

int64_t Scheduler::MemoryOf(const SimModel& model, int num_ctx) {
  // Weights plus a KV cache of about 128 KiB per context token (an 8B model at 4096 tokens).
  const int64_t per_token = model.Has("embedding") ? 4096 : 131072;
  return model.size + static_cast<int64_t>(num_ctx) * per_token;
}

int64_t Scheduler::UsedMemoryLocked() const {
  int64_t used = 0;
  for (const auto& [key, entry] : loaded_) used += MemoryOf(entry.model, entry.num_ctx);
  return used;
}

void Scheduler::ExpireLocked(WallTime now) {
  for (auto it = loaded_.begin(); it != loaded_.end();) {
    const Loaded& e = it->second;
    if (!e.loading && e.active == 0 && !e.forever && e.expires <= now) {
      it = loaded_.erase(it);
    } else {
      ++it;
    }
  }
}

void Scheduler::SetExpiryLocked(Loaded& entry, const KeepAlive& keep_alive, WallTime now) {
  entry.forever = keep_alive.forever;
  if (!keep_alive.forever) {
    entry.expires = now + std::chrono::duration_cast<WallTime::duration>(keep_alive.duration);
  }
}

bool Scheduler::MakeRoomLocked(int64_t need) {
  if (limits_.vram_bytes <= 0) return true;
  while (UsedMemoryLocked() + need > limits_.vram_bytes) {
    auto victim = loaded_.end();
    for (auto it = loaded_.begin(); it != loaded_.end(); ++it) {
      if (it->second.loading || it->second.active > 0) continue;
      if (victim == loaded_.end() || it->second.last_used < victim->second.last_used) victim = it;
    }
    if (victim == loaded_.end()) {
      // Nothing idle to evict. With nothing loaded at all the model loads partly on the CPU.
      return loaded_.empty();
    }
    loaded_.erase(victim);
  }
  return true;
}

Scheduler::Result Scheduler::Acquire(const SimModel& model, int num_ctx,
                                     const KeepAlive& keep_alive, const CancelCheck& cancelled,
                                     Lease* lease) {
  std::unique_lock<std::mutex> lock(mu_);
  if (shutdown_) return Result::kShutdown;
  if (pending_ >= limits_.max_queue) return Result::kBusy;
  ++pending_;
  *lease = Lease{model.key, {}};
  while (true) {
    if (shutdown_) {
      --pending_;
      cv_.notify_all();
      return Result::kShutdown;
    }
    const WallTime now = std::chrono::system_clock::now();
    ExpireLocked(now);
    auto it = loaded_.find(model.key);
    if (it != loaded_.end() && !it->second.loading) {
      Loaded& entry = it->second;
      if (entry.num_ctx == num_ctx && entry.active < std::max(1, limits_.num_parallel)) {
        ++entry.active;
        entry.unload_when_idle = false;
        --pending_;
        return Result::kReady;
      }
      if (entry.num_ctx != num_ctx && entry.active == 0 && !loading_) {
        loaded_.erase(it);  // other runner options: reload
        continue;
      }
    } else if (it == loaded_.end() && !loading_ && MakeRoomLocked(MemoryOf(model, num_ctx))) {
      loading_ = true;
      Loaded& entry = loaded_[model.key];
      entry.model = model;
      entry.num_ctx = num_ctx;
      entry.active = 1;  // the loading request's own slot
      entry.last_used = std::chrono::steady_clock::now();
      SetExpiryLocked(entry, keep_alive, now);
      const auto started = std::chrono::steady_clock::now();
      const auto done_at = started + limits_.load_delay;
      bool gave_up = false;
      while (!shutdown_ && std::chrono::steady_clock::now() < done_at) {
        cv_.wait_until(lock, std::min(done_at, std::chrono::steady_clock::now() + kCancelPoll));
        lock.unlock();
        gave_up = cancelled();
        lock.lock();
        if (gave_up) break;
      }
      loading_ = false;
      --pending_;
      cv_.notify_all();
      if (gave_up || shutdown_) {
        loaded_.erase(model.key);
        return gave_up ? Result::kCancelled : Result::kShutdown;
      }
      loaded_[model.key].loading = false;
      lease->load_duration = std::chrono::steady_clock::now() - started;
      return Result::kReady;
    }
    cv_.wait_for(lock, kCancelPoll);
    lock.unlock();
    const bool gone = cancelled();
    lock.lock();
    if (gone) {
      --pending_;
      cv_.notify_all();
      return Result::kCancelled;
    }
  }
}

void Scheduler::Release(const Lease& lease, const KeepAlive& keep_alive) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = loaded_.find(lease.key);
  if (it != loaded_.end()) {
    Loaded& entry = it->second;
    entry.active = std::max(0, entry.active - 1);
    entry.last_used = std::chrono::steady_clock::now();
    const bool zero = !keep_alive.forever && keep_alive.duration.count() == 0;
    if (zero) entry.unload_when_idle = true;
    SetExpiryLocked(entry, keep_alive, std::chrono::system_clock::now());
    if (entry.active == 0 && entry.unload_when_idle) loaded_.erase(it);
  }
  cv_.notify_all();
}

void Scheduler::Unload(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = loaded_.find(key);
  if (it == loaded_.end() || it->second.loading) return;
  if (it->second.active == 0) {
    loaded_.erase(it);
  } else {
    it->second.unload_when_idle = true;
  }
  cv_.notify_all();
}

void Scheduler::UnloadIdle() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = loaded_.begin(); it != loaded_.end();) {
    if (!it->second.loading && it->second.active == 0) {
      it = loaded_.erase(it);
    } else {
      ++it;
    }
  }
  cv_.notify_all();
}

void Scheduler::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutdown_ = true;
  cv_.notify_all();
}

Json Scheduler::PsJson() {
  std::lock_guard<std::mutex> lock(mu_);
  const WallTime now = std::chrono::system_clock::now();
  ExpireLocked(now);
  struct Row {
    int64_t expires_s;
    int expires_ns;
    Json json;
  };
  std::vector<Row> rows;
  for (const auto& [key, e] : loaded_) {
    int64_t secs;
    int nanos;
    if (e.forever) {
      // Go's "forever" is MaxInt64 nanoseconds from now: about 292 years.
      const int64_t now_ns = UnixNanos(now);
      secs = now_ns / 1000000000 + 9223372036LL;
      nanos = static_cast<int>(now_ns % 1000000000);
    } else {
      const int64_t ns = UnixNanos(e.expires);
      secs = ns / 1000000000;
      nanos = static_cast<int>(ns % 1000000000);
    }
    const int64_t memory = MemoryOf(e.model, e.num_ctx);
    int64_t vram = memory;
    if (limits_.vram_bytes > 0) vram = std::min(memory, limits_.vram_bytes);
    rows.push_back({secs, nanos,
                    Json{{"name", e.model.name},
                         {"model", e.model.name},
                         {"size", memory},
                         {"digest", e.model.digest},
                         {"details", DetailsJson(e.model, false)},
                         {"expires_at", FormatLocal(secs, nanos)},
                         {"size_vram", vram},
                         {"context_length", e.num_ctx}}});
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.expires_s != b.expires_s ? a.expires_s > b.expires_s : a.expires_ns > b.expires_ns;
  });
  Json models = Json::array();
  for (Row& r : rows) models.push_back(std::move(r.json));
  return Json{{"models", models}};
}

int Scheduler::Active() const {
  std::lock_guard<std::mutex> lock(mu_);
  int active = 0;
  for (const auto& [key, e] : loaded_) active += e.active;
  return active;
}

int Scheduler::Pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_;
}

std::vector<std::string> Scheduler::LoadedNames() {
  std::lock_guard<std::mutex> lock(mu_);
  ExpireLocked(std::chrono::system_clock::now());
  std::vector<std::string> names;
  for (const auto& [key, e] : loaded_) names.push_back(e.model.name);
  return names;
}

}  // namespace corral::sim
