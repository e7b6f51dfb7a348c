// Busy polling while the process is nearly idle.
//
// A thread that blocks for a socket and is woken when bytes arrive pays for two context switches;
// on a virtual machine each costs tens of microseconds, more than a fast node takes to answer. At
// low load the serving thread therefore polls the socket without blocking for a short while
// first (BusyPoll::kSpin), and blocks only when nothing came. Under load it never spins: with
// more requests in progress than half the CPUs, spinning would take CPU from the threads that do
// the work, and a busy thread rarely sleeps long anyway.
//
// Thread safety: every function may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>

namespace corral {

class BusyPoll {
 public:
  static constexpr std::chrono::microseconds kSpin{50};

  // Counts one request in progress for its lifetime (from its head's arrival to the end of its
  // answer).
  class Request {
   public:
    Request() { in_progress_.fetch_add(1, std::memory_order_relaxed); }
    ~Request() { in_progress_.fetch_sub(1, std::memory_order_relaxed); }
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;
  };

  // True when a thread may spin now, counting `own` of the requests in progress as its own.
  static bool Allowed(int own);

  // Calls `ready` until it returns true or kSpin passes; false when it never did.
  template <typename Ready>
  static bool Spin(Ready ready) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    do {
      if (ready()) return true;
    } while (std::chrono::steady_clock::now() < until);
    return false;
  }

 private:
  static std::atomic<int> in_progress_;
};

}  // namespace corral
