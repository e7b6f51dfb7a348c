#include "common/busy_poll.h"

#include <algorithm>
#include <thread>

namespace corral {

std::atomic<int> BusyPoll::in_progress_{0};

bool BusyPoll::Allowed(int own) {
  static const int limit = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / 2);
  return in_progress_.load(std::memory_order_relaxed) - own < limit;
}

}  // namespace corral
