#include "sim/token_gate.h"

#include <algorithm>
#include <chrono>

namespace corral::sim {

void TokenGate::SetGated(bool gated) {
  std::lock_guard<std::mutex> lock(mu_);
  gated_ = gated;
  available_ = 0;
  cv_.notify_all();
}

bool TokenGate::gated() const {
  std::lock_guard<std::mutex> lock(mu_);
  return gated_;
}

void TokenGate::Release(int tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  available_ += std::max(0, tokens);
  cv_.notify_all();
}

bool TokenGate::Pass(const std::function<bool()>& cancelled) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!gated_) return !shutdown_;
  const uint64_t ticket = next_ticket_++;
  waiters_.push_back(ticket);
  auto leave = [&] {
    waiters_.erase(std::find(waiters_.begin(), waiters_.end(), ticket));
    cv_.notify_all();
  };
  while (true) {
    if (shutdown_) {
      leave();
      return false;
    }
    if (!gated_) {
      leave();
      return true;
    }
    if (waiters_.front() == ticket && available_ > 0) {
      --available_;
      ++passed_;
      leave();
      return true;
    }
    cv_.wait_for(lock, std::chrono::milliseconds(20));
    lock.unlock();
    const bool gone = cancelled();
    lock.lock();
    if (gone) {
      leave();
      return false;
    }
  }
}

void TokenGate::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutdown_ = true;
  cv_.notify_all();
}

TokenGate::Status TokenGate::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {gated_, static_cast<int>(waiters_.size()), available_, passed_};
}

}  // namespace corral::sim
