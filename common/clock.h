// Time as a seam: production code reads the steady clock through Clock so tests can move time
// by hand instead of sleeping.
//
// Thread safety: SteadyClock is stateless; ManualClock is safe from any thread.
#pragma once

#include <atomic>
#include <chrono>

namespace corral {

using Duration = std::chrono::steady_clock::duration;
using TimePoint = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

class SteadyClock : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
  // A process-wide instance for production wiring.
  static const Clock& Instance() {
    static const SteadyClock clock;
    return clock;
  }
};

class ManualClock : public Clock {
 public:
  TimePoint Now() const override { return TimePoint(Duration(now_.load())); }
  void Advance(Duration d) { now_.fetch_add(d.count()); }

 private:
  std::atomic<Duration::rep> now_{Duration(std::chrono::hours(1)).count()};
};

}  // namespace corral
