#include "dataplane/relay_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "common/log.h"

namespace corral::dataplane {

using Clock = std::chrono::steady_clock;

void RememberTail(const std::string& piece, std::string* tail) {
  if (piece.size() >= 2) {
    tail->assign(piece, piece.size() - 2, 2);
  } else if (!piece.empty()) {
    tail->append(piece);
    if (tail->size() > 2) tail->erase(0, tail->size() - 2);
  }
}

struct RelayLoop::Entry {
  explicit Entry(const Stream& s) : stream(s), node_watch{this, false}, client_watch{this, true} {}

  const Stream stream;
  Watch node_watch;
  Watch client_watch;
  std::string out;  // framed bytes for the client; out[0, sent) already went
  size_t sent = 0;
  Clock::time_point node_heard;      // the node's last bytes (or the hand-over)
  Clock::time_point client_stalled;  // since when queued bytes wait for the client
  bool reading = true;               // the node's socket is watched
  bool writing = false;              // the client's socket is watched for room
  bool ending = false;               // `end` is decided; completes once `out` is empty
  bool completing = false;           // taken out of the loop; its waiter is woken after the pass
  End end = End::kFinished;

  // Guarded by RelayLoop::mu_.
  bool done = false;
  End result = End::kFinished;
  std::condition_variable cv;

  size_t pending() const { return out.size() - sent; }
};

RelayLoop::RelayLoop(std::chrono::milliseconds tick) : tick_(tick) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    CORRAL_LOG(kError, "relay") << "cannot create the relay loop: " << std::strerror(errno);
    std::abort();
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the wake-up descriptor
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  thread_ = std::thread([this] { Run(); });
}

RelayLoop::~RelayLoop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(wake_fd_, &one, sizeof one);
  thread_.join();
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

void RelayLoop::Abort() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    aborting_ = true;
  }
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(wake_fd_, &one, sizeof one);
}

RelayLoop::End RelayLoop::Carry(const Stream& stream) {
  Entry entry(stream);
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_ || aborting_) return End::kStopping;
  incoming_.push_back(&entry);
  carried_.fetch_add(1);
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(wake_fd_, &one, sizeof one);
  entry.cv.wait(lock, [&] { return entry.done; });
  carried_.fetch_sub(1);
  return entry.result;
}

void RelayLoop::Register(Entry* e) {
  const auto now = Clock::now();
  e->node_heard = now;
  e->client_stalled = now;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &e->node_watch;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, e->stream.node->fd(), &ev) != 0) {
    Complete(e, End::kNodeFailed);
    return;
  }
  // Only the client's hang-up matters while it waits for the answer: bytes it sends meanwhile
  // (a pipelined request) are the listener's to read afterwards.
  ev.events = EPOLLRDHUP;
  ev.data.ptr = &e->client_watch;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, e->stream.client_fd, &ev) != 0) {
    Complete(e, End::kClientGone);
    return;
  }
  streams_.push_back(e);
}

void RelayLoop::Run() {
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  auto last_check = Clock::now();
  while (true) {
    const int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, static_cast<int>(tick_.count()));
    bool stop = false;
    bool abort = false;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == nullptr) {
        uint64_t count;
        [[maybe_unused]] ssize_t r = ::read(wake_fd_, &count, sizeof count);
        std::vector<Entry*> arrived;
        {
          std::lock_guard<std::mutex> lock(mu_);
          arrived.swap(incoming_);
          stop = stopping_;
          abort = aborting_;
        }
        for (Entry* e : arrived) Register(e);
        continue;
      }
      const Watch* watch = static_cast<const Watch*>(events[i].data.ptr);
      Entry* e = watch->entry;
      if (e->completing) continue;
      const uint32_t what = events[i].events;
      if (watch->client) {
        if (what & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
          Complete(e, End::kClientGone);
        } else if (what & EPOLLOUT) {
          Flush(e);
        }
      } else if (!e->ending) {
        Pump(e);
      }
    }
    const auto now = Clock::now();
    if (abort || stop) {
      for (Entry* e : std::vector<Entry*>(streams_)) Complete(e, End::kStopping);
    } else if (now - last_check >= tick_) {
      last_check = now;
      CheckLimits(now);
    }
    if (!completed_.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [e, end] : completed_) {
        e->result = end;
        e->done = true;
        e->cv.notify_one();  // under the lock: the waiter cannot return (and free e) before
      }
      completed_.clear();
    }
    // Nothing can be waiting in incoming_ now: `stop` was read in the same lock that emptied it,
    // and Carry hands nothing over once stopping_ is set.
    if (stop) return;
  }
}

void RelayLoop::Pump(Entry* e) {
  UpstreamConnection& node = *e->stream.node;
  const ReadOutcome read = node.ReadSome();
  if (read == ReadOutcome::kClosed || read == ReadOutcome::kError) {
    Finish(e, End::kNodeFailed);
    return;
  }
  if (read != ReadOutcome::kProgress) return;
  e->node_heard = Clock::now();
  if (node.has_body()) {
    const std::string piece = node.TakeBody();
    RememberTail(piece, e->stream.tail);
    if (e->stream.tap != nullptr) e->stream.tap->Saw(piece);
    // Flush empties `out` whenever it sent everything: a stall is timed from its first byte.
    if (e->pending() == 0) e->client_stalled = e->node_heard;
    char size_line[32];
    const int len = std::snprintf(size_line, sizeof size_line, "%zx\r\n", piece.size());
    e->out.append(size_line, static_cast<size_t>(len));
    e->out.append(piece);
    e->out.append("\r\n");
  }
  if (node.message_complete()) {
    Finish(e, End::kFinished);
  } else {
    Flush(e);
  }
}

void RelayLoop::Flush(Entry* e) {
  while (e->pending() > 0) {
    const ssize_t n = ::send(e->stream.client_fd, e->out.data() + e->sent, e->pending(),
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      e->sent += static_cast<size_t>(n);
      e->client_stalled = Clock::now();
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    Complete(e, End::kClientGone);
    return;
  }
  if (e->pending() == 0) {
    e->out.clear();
    e->sent = 0;
    if (e->ending) {
      Complete(e, e->end);
      return;
    }
  }
  UpdateInterest(e);
}

void RelayLoop::Finish(Entry* e, End end) {
  e->ending = true;
  e->end = end;
  Flush(e);
}

void RelayLoop::UpdateInterest(Entry* e) {
  const bool reading = !e->ending && e->pending() < kMaxPendingBytes;
  const bool writing = e->pending() > 0;
  if (reading != e->reading) {
    // Silence while not read is the proxy's doing, not the node's.
    if (reading) e->node_heard = Clock::now();
    epoll_event ev{};
    ev.events = reading ? uint32_t{EPOLLIN} : uint32_t{0};
    ev.data.ptr = &e->node_watch;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, e->stream.node->fd(), &ev);
    e->reading = reading;
  }
  if (writing != e->writing) {
    epoll_event ev{};
    ev.events = uint32_t{EPOLLRDHUP} | (writing ? uint32_t{EPOLLOUT} : uint32_t{0});
    ev.data.ptr = &e->client_watch;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, e->stream.client_fd, &ev);
    e->writing = writing;
  }
}

void RelayLoop::Complete(Entry* e, End end) {
  if (e->completing) return;
  e->completing = true;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, e->stream.node->fd(), nullptr);
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, e->stream.client_fd, nullptr);
  streams_.erase(std::remove(streams_.begin(), streams_.end(), e), streams_.end());
  completed_.emplace_back(e, end);
}

void RelayLoop::CheckLimits(Clock::time_point now) {
  for (Entry* e : std::vector<Entry*>(streams_)) {
    if (e->pending() > 0 && now - e->client_stalled > e->stream.client_timeout) {
      Complete(e, End::kClientGone);
    } else if (!e->ending && e->reading && now - e->node_heard > e->stream.idle) {
      Finish(e, End::kIdle);
    }
  }
}

}  // namespace corral::dataplane
