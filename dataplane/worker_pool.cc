#include "dataplane/worker_pool.h"

#include <algorithm>
#include <system_error>

#include "common/http_listener.h"
#include "common/log.h"

namespace corral::dataplane {

WorkerPool::WorkerPool(size_t max_threads, std::chrono::milliseconds idle_exit)
    : max_threads_(std::max<size_t>(1, max_threads)), idle_exit_(idle_exit) {}

WorkerPool::~WorkerPool() { shutdown(); }

void WorkerPool::enqueue(std::function<void()> fn) {
  std::vector<std::thread> to_join;
  bool refuse = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_ < jobs_.size() + 1 && threads_ < max_threads_ && !stopping_) {
      // The system may have no thread left to give (a limit on tasks, or memory): then this
      // connection is refused rather than the process ended by the exception.
      try {
        all_.emplace_back([this] { Work(); });
        ++threads_;
      } catch (const std::system_error& e) {
        refuse = idle_ == 0;
        CORRAL_LOG(kError, "proxy")
            << "cannot start a worker thread (" << e.what() << "), " << threads_
            << " running: " << (refuse ? "refusing the connection" : "queueing it");
      }
    }
    if (!refuse) jobs_.push_back(std::move(fn));
    // Threads that retired while idle are joined here (a thread cannot join itself).
    if (!retired_.empty()) {
      for (auto it = all_.begin(); it != all_.end();) {
        if (std::find(retired_.begin(), retired_.end(), it->get_id()) != retired_.end()) {
          to_join.push_back(std::move(*it));
          it = all_.erase(it);
        } else {
          ++it;
        }
      }
      retired_.clear();
    }
  }
  if (refuse) {
    const RefuseConnectionsHere refusing;
    fn();
  } else {
    cv_.notify_one();
  }
  for (auto& t : to_join) t.join();
}

void WorkerPool::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    ++idle_;
    const bool woke = cv_.wait_for(lock, idle_exit_, [&] { return stopping_ || !jobs_.empty(); });
    --idle_;
    if (jobs_.empty()) {
      if (!stopping_ && woke) continue;
      --threads_;
      if (!stopping_) retired_.push_back(std::this_thread::get_id());
      return;
    }
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

void WorkerPool::shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    threads.swap(all_);
  }
  cv_.notify_all();
  for (auto& t : threads) {
    if (t.joinable()) t.join();
  }
}

size_t WorkerPool::threads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return threads_;
}

}  // namespace corral::dataplane
