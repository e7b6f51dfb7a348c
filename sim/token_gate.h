// Gated token release for deterministic streaming tests.
//
// While gated, every generated token waits for a release; Release(k) lets the next k tokens
// through in the order their streams asked for them (first come, first served across streams).
// A proxy test can then prove that token N reached its client before token N+1 was released,
// without any timing threshold.
//
// Thread safety: all methods may be called from any thread; one mutex guards the state.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>

namespace corral::sim {

class TokenGate {
 public:
  // Turning the gate on or off drops unused releases; turning it off lets every waiter through.
  void SetGated(bool gated);
  bool gated() const;
  void Release(int tokens);
  // Blocks until this caller may emit one token. Returns false if `cancelled` turned true or
  // Shutdown was called first.
  bool Pass(const std::function<bool()>& cancelled);
  void Shutdown();

  struct Status {
    bool gated;
    int waiting;     // tokens blocked right now
    int available;   // releases not used yet
    int64_t passed;  // tokens let through while gated
  };
  Status status() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool gated_ = false;            // guarded by mu_
  bool shutdown_ = false;         // guarded by mu_
  int available_ = 0;             // guarded by mu_
  int64_t passed_ = 0;            // guarded by mu_
  uint64_t next_ticket_ = 0;      // guarded by mu_
  std::deque<uint64_t> waiters_;  // FIFO of tickets; guarded by mu_
};

}  // namespace corral::sim
