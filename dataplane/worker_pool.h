// WorkerPool: httplib's task queue for the proxy, with threads started on demand.
//
// httplib serves each client connection on one pool thread for the connection's whole life, so
// the pool must be as large as the streams the proxy promises (thousands). httplib's own pool
// starts every thread up front, and each started thread costs resident memory for its stack
// even when idle; this pool starts a thread only when a connection arrives and none is idle,
// up to `max_threads`, and lets a thread that stayed idle for `idle_exit` end. Past
// `max_threads`, connections wait in the queue (the proxy's own admission answers 503 long
// before that, since the pool has headroom over --max-streams).
//
// Thread safety: enqueue from httplib's accept thread; shutdown once, from the thread running
// the server; counters from any thread.
#pragma once

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace corral::dataplane {

class WorkerPool : public httplib::TaskQueue {
 public:
  explicit WorkerPool(size_t max_threads,
                      std::chrono::milliseconds idle_exit = std::chrono::seconds(60));
  ~WorkerPool() override;

  void enqueue(std::function<void()> fn) override;
  // Runs every queued job, then joins all threads.
  void shutdown() override;

  size_t threads() const;

 private:
  void Work();

  const size_t max_threads_;
  const std::chrono::milliseconds idle_exit_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  size_t threads_ = 0;                      // running threads; guarded by mu_
  size_t idle_ = 0;                         // threads waiting for a job; guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  std::vector<std::thread::id> retired_;    // ended while idle, not joined yet; guarded by mu_
  std::vector<std::thread> all_;            // guarded by mu_
};

}  // namespace corral::dataplane
