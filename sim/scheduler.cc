#include "sim/scheduler.h"

#include <algorithm>
#include <cmath>

namespace corral::sim {
namespace {

// How often a waiting request looks at its client; releases wake waiters at once anyway.
constexpr auto kCancelPoll = std::chrono::milliseconds(20);

}  // namespace

std::chrono::nanoseconds LoadTime(const SchedulerLimits& limits, int64_t model_size) {
  const double per_size_ms =
      limits.load_ms_per_gib * static_cast<double>(std::max<int64_t>(0, model_size)) / kBytesPerGib;
  return limits.load_delay +
         std::chrono::nanoseconds(static_cast<int64_t>(std::llround(per_size_ms * 1e6)));
}

void Scheduler::SetLimits(const SchedulerLimits& limits) {
  std::lock_guard<std::mutex> lock(mu_);
  limits_ = limits;
  cv_.notify_all();
}

int64_t Scheduler::MemoryOf(const SimModel& model) {
  // The model's size, nothing for the KV cache: a benchmark that gives a node room for N models
  // of known sizes gets exactly that.
  return model.size;
}

int64_t Scheduler::UsedMemoryLocked() const {
  int64_t used = 0;
  for (const auto& [key, entry] : loaded_) used += MemoryOf(entry.model);
  return used;
}

int Scheduler::RunningLocked() const {
  int running = 0;
  for (const auto& [key, entry] : loaded_) {
    if (!entry.loading) running += entry.active;
  }
  return running;
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
  int64_t busy = 0;
  for (const auto& [key, e] : loaded_) {
    if (e.loading || e.active > 0) busy += MemoryOf(e.model);
  }
  // Evict nothing while the busy models alone leave too little room: the load waits for them.
  // With nothing busy, a model larger than the whole budget loads partly on the CPU.
  if (busy > 0 && busy + need > limits_.vram_bytes) return false;
  while (UsedMemoryLocked() + need > limits_.vram_bytes) {
    auto victim = loaded_.end();
    for (auto it = loaded_.begin(); it != loaded_.end(); ++it) {
      if (it->second.loading || it->second.active > 0) continue;
      if (victim == loaded_.end() || it->second.last_used < victim->second.last_used) victim = it;
    }
    if (victim == loaded_.end()) break;
    loaded_.erase(victim);
    ++stats_.evictions;
  }
  return true;
}

Scheduler::Result Scheduler::Acquire(const SimModel& model, int num_ctx,
                                     const KeepAlive& keep_alive, const CancelCheck& cancelled,
                                     Lease* lease) {
  std::unique_lock<std::mutex> lock(mu_);
  if (shutdown_) return Result::kShutdown;
  if (limits_.max_queue > 0 && pending_ >= limits_.max_queue) return Result::kBusy;
  ++pending_;
  ++stats_.requests;
  ++stats_.models[model.name].requests;
  *lease = Lease{model.key, {}};
  const uint64_t ticket = next_ticket_++;
  model_waiters_[model.key].insert(ticket);
  // Leaves the wait: the place in the queue, among this model's waiters and among room waiters.
  const auto leave = [&] {
    --pending_;
    model_waiters_[model.key].erase(ticket);
    if (model_waiters_[model.key].empty()) model_waiters_.erase(model.key);
    room_waiters_.erase(ticket);
    cv_.notify_all();
  };
  while (true) {
    if (shutdown_) {
      leave();
      return Result::kShutdown;
    }
    const WallTime now = std::chrono::system_clock::now();
    ExpireLocked(now);
    auto it = loaded_.find(model.key);
    // Ollama takes pending requests in order: while an older request waits for memory to load
    // its model, later ones wait behind it, so a busy model cannot starve a cold one; and the
    // requests for one model get its slots first come, first served (its semaphore is FIFO).
    const bool behind_a_load = !room_waiters_.empty() && *room_waiters_.begin() < ticket;
    const bool behind_same_model = *model_waiters_.at(model.key).begin() < ticket;
    if (behind_a_load || behind_same_model) {
      // wait below
    } else if (it != loaded_.end() && !it->second.loading) {
      Loaded& entry = it->second;
      if (entry.num_ctx == num_ctx && entry.active < std::max(1, limits_.num_parallel)) {
        ++entry.active;
        entry.unload_when_idle = false;
        leave();
        stats_.max_running = std::max(stats_.max_running, RunningLocked());
        return Result::kReady;
      }
      if (entry.num_ctx != num_ctx && entry.active == 0 && !loading_) {
        loaded_.erase(it);  // other runner options: reload
        continue;
      }
    } else if (it == loaded_.end() && !loading_ && !MakeRoomLocked(MemoryOf(model))) {
      room_waiters_.insert(ticket);
    } else if (it == loaded_.end() && !loading_) {
      room_waiters_.erase(ticket);
      loading_ = true;
      Loaded& entry = loaded_[model.key];
      entry.model = model;
      entry.num_ctx = num_ctx;
      entry.active = 1;  // the loading request's own slot
      entry.last_used = std::chrono::steady_clock::now();
      SetExpiryLocked(entry, keep_alive, now);
      ++stats_.loads;
      ++stats_.models[model.name].loads;
      const auto started = std::chrono::steady_clock::now();
      const auto done_at =
          started + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        LoadTime(limits_, model.size));
      bool gave_up = false;
      while (!shutdown_ && std::chrono::steady_clock::now() < done_at) {
        cv_.wait_until(lock, std::min(done_at, std::chrono::steady_clock::now() + kCancelPoll));
        lock.unlock();
        gave_up = cancelled();
        lock.lock();
        if (gave_up) break;
      }
      loading_ = false;
      leave();
      const auto loaded_in = std::chrono::steady_clock::now() - started;
      stats_.load_seconds += std::chrono::duration<double>(loaded_in).count();
      if (gave_up || shutdown_) {
        loaded_.erase(model.key);
        return gave_up ? Result::kCancelled : Result::kShutdown;
      }
      loaded_[model.key].loading = false;
      lease->load_duration = loaded_in;
      stats_.max_running = std::max(stats_.max_running, RunningLocked());
      return Result::kReady;
    }
    cv_.wait_for(lock, kCancelPoll);
    lock.unlock();
    const bool gone = cancelled();
    lock.lock();
    if (gone) {
      leave();
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
    const int64_t memory = MemoryOf(e.model);
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

SchedulerStats Scheduler::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Scheduler::ResetStats() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_ = SchedulerStats{};
  stats_.max_running = RunningLocked();
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
