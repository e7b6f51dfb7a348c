#include "dataplane/wait_queue.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "dataplane/proxy_metrics.h"

namespace corral::dataplane {
namespace {

using std::chrono::milliseconds;

// A waiter looks at its deadline and the proxy's stop flag at least this often, whatever wakes
// it; the deadline comes from the injected clock, which a test moves by hand.
constexpr milliseconds kCheckEvery(100);
// ... and picks again at least this often without a wake: limits can grow (slot grants, a new
// snapshot, an ejection that ended) without a slot being given back.
constexpr milliseconds kPickAgainEvery(1000);

double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

void Signal(int efd) {
  const uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(efd, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
}

}  // namespace

const char* WaitQueue::EndName(End end) {
  switch (end) {
    case End::kGot:
      return "got";
    case End::kTimedOut:
      return "timeout";
    case End::kFull:
      return "full";
    case End::kClientGone:
      return "client_gone";
    case End::kStopping:
      return "stopping";
  }
  return "unknown";
}

WaitQueue::WaitQueue(const Clock& clock) : clock_(clock) {}

WaitQueue::~WaitQueue() = default;

void WaitQueue::Wake(std::string_view node, Waiter* after) {
  std::lock_guard lock(mu_);
  auto it = waiters_.begin();
  if (after != nullptr) {
    it = std::find(waiters_.begin(), waiters_.end(), after);
    if (it != waiters_.end()) ++it;
  }
  for (; it != waiters_.end(); ++it) {
    Waiter& w = **it;
    if (w.woken || !(*w.can_use)(node)) continue;
    w.woken = true;
    w.woken_for.assign(node);
    Signal(w.efd);
    return;
  }
}

void WaitQueue::WakeAll() {
  std::lock_guard lock(mu_);
  for (Waiter* w : waiters_) Signal(w->efd);
}

void WaitQueue::Stop() {
  stopped_.store(true);
  WakeAll();
}

void WaitQueue::Leave(WaiterList::iterator it, End end, Duration waited) {
  std::string pass_on;
  {
    std::lock_guard lock(mu_);
    Waiter& w = **it;
    // A wake this waiter took and did not use (it left, or got another node) is the next one's.
    if (w.woken) pass_on = std::move(w.woken_for);
    waiters_.erase(it);
    depth_.store(static_cast<int64_t>(waiters_.size()), std::memory_order_relaxed);
    wait_seconds_total_ += Seconds(waited);
    switch (end) {
      case End::kGot:
        ++served_total_;
        break;
      case End::kTimedOut:
        ++timed_out_total_;
        break;
      case End::kClientGone:
        ++client_gone_total_;
        break;
      default:
        break;
    }
  }
  if (!pass_on.empty()) Wake(pass_on, nullptr);
  if (metrics_ != nullptr) {
    metrics_->queue_depth.Set(static_cast<double>(depth()));
    metrics_->queue_wait.Observe(Seconds(waited));
    if (end != End::kGot) metrics_->queue_rejections.Get({EndName(end)}).Inc();
  }
}

WaitQueue::Outcome WaitQueue::Wait(const Limits& limits, std::string_view model_key, CanUse can_use,
                                   Take take, int client_fd, const std::atomic<bool>* aborting) {
  Outcome out;
  auto stopping = [&] { return stopped_.load() || (aborting != nullptr && aborting->load()); };
  if (stopping()) {
    out.end = End::kStopping;
    return out;
  }
  Waiter self;
  self.model_key = model_key;
  self.can_use = &can_use;
  self.joined = clock_.Now();
  WaiterList::iterator it;
  {
    std::lock_guard lock(mu_);
    if (static_cast<int64_t>(waiters_.size()) >= std::max<int64_t>(1, limits.max_length)) {
      ++full_total_;
      out.end = End::kFull;
    } else {
      self.efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (self.efd < 0) {
        // Out of descriptors: the proxy cannot hold one more waiter.
        ++full_total_;
        out.end = End::kFull;
      } else {
        ++waited_total_;
        it = waiters_.insert(waiters_.end(), &self);
        depth_.store(static_cast<int64_t>(waiters_.size()), std::memory_order_relaxed);
      }
    }
  }
  if (out.end == End::kFull) {
    if (metrics_ != nullptr) metrics_->queue_rejections.Get({EndName(End::kFull)}).Inc();
    return out;
  }
  if (metrics_ != nullptr) metrics_->queue_depth.Set(static_cast<double>(depth()));

  const TimePoint deadline = self.joined + limits.max_wait;
  TimePoint last_pick = self.joined;
  bool pick = true;
  for (;;) {
    if (pick) {
      std::string woken_for;
      {
        std::lock_guard lock(mu_);
        woken_for = self.woken_for;
        self.woken = false;
        self.woken_for.clear();
      }
      last_pick = clock_.Now();
      if (const std::string* got = take()) {
        out.end = End::kGot;
        // Leave passes the wake on only when it is still pending; one consumed here for a node
        // this request did not take is passed on now.
        if (!woken_for.empty() && *got != woken_for) Wake(woken_for, &self);
        break;
      }
      if (!woken_for.empty()) Wake(woken_for, &self);
      pick = false;
    }
    if (stopping()) {
      out.end = End::kStopping;
      break;
    }
    const TimePoint now = clock_.Now();
    if (now >= deadline) {
      out.end = End::kTimedOut;
      break;
    }
    if (now - last_pick >= kPickAgainEvery) {
      pick = true;
      continue;
    }
    const auto slice = std::min<Duration>(kCheckEvery, deadline - now);
    pollfd fds[2] = {{self.efd, POLLIN, 0}, {client_fd, POLLIN | POLLRDHUP, 0}};
    const nfds_t n = client_fd >= 0 ? 2 : 1;
    const int timeout_ms = static_cast<int>(std::chrono::ceil<milliseconds>(slice).count());
    const int ready = ::poll(fds, n, std::max(1, timeout_ms));
    if (ready <= 0) continue;  // a slice passed (or EINTR): check the deadline again
    if (n == 2 && fds[1].revents != 0) {
      bool gone = (fds[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
      if (!gone) {
        char c;
        const ssize_t got = ::recv(client_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        gone = got == 0;
        // Bytes of a next request (pipelining): the client is there; stop watching its socket,
        // which would stay readable.
        if (got > 0) client_fd = -1;
      }
      if (gone) {
        out.end = End::kClientGone;
        break;
      }
    }
    if (fds[0].revents != 0) {
      uint64_t count;
      while (::read(self.efd, &count, sizeof(count)) > 0) {
      }
      pick = true;
    }
  }
  out.waited = clock_.Now() - self.joined;
  Leave(it, out.end, out.waited);
  ::close(self.efd);
  return out;
}

WaitQueue::Stats WaitQueue::stats() const {
  Stats s;
  const TimePoint now = clock_.Now();
  std::lock_guard lock(mu_);
  s.depth = static_cast<int64_t>(waiters_.size());
  s.waited_total = waited_total_;
  s.served_total = served_total_;
  s.timed_out_total = timed_out_total_;
  s.full_total = full_total_;
  s.client_gone_total = client_gone_total_;
  s.wait_seconds_total = wait_seconds_total_;
  if (!waiters_.empty()) s.longest_wait_seconds = Seconds(now - waiters_.front()->joined);
  return s;
}

int64_t WaitQueue::Waiting(std::string_view node, std::string_view model_key) const {
  std::lock_guard lock(mu_);
  int64_t n = 0;
  for (const Waiter* w : waiters_) {
    if (!model_key.empty() && w->model_key != model_key) continue;
    if (!node.empty() && !(*w->can_use)(node)) continue;
    ++n;
  }
  return n;
}

std::map<std::string, int64_t> WaitQueue::WaitingByModel(std::string_view node) const {
  std::map<std::string, int64_t> out;
  std::lock_guard lock(mu_);
  for (const Waiter* w : waiters_) {
    if ((*w->can_use)(node)) ++out[std::string(w->model_key)];
  }
  return out;
}

}  // namespace corral::dataplane
