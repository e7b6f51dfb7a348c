// corral-loadgen: the load generator of `make bench` (bench/run.sh) for what wrk cannot
// measure. One thread, one epoll loop, non-blocking HTTP/1.1 keep-alive connections spread
// round-robin over the given ports. Two modes:
//
//   open    Open-loop latency at a fixed offered rate. Request i is due at start + i / rate,
//           whatever happened to the ones before it; it goes out on an idle connection as soon
//           as one is free, and its latency is counted from the time it was due, so a stall is
//           charged to every request it held back (no coordinated omission). Requests still
//           unanswered (or never sent) when the drain time ends are counted as late and enter
//           the percentiles with the time they had waited by then, a lower bound.
//   stream  N connections, each sending one streaming request after the other (closed loop per
//           stream). For every answer: time to first token (request sent to first complete
//           NDJSON line), the gap between consecutive lines, and each later line's transit
//           (the node's `created_at` to its arrival here, both on this machine's clock: what
//           the path adds to a chunk, free of the node's pacing jitter); the most requests in
//           flight at once (sent, not yet ended) and the most answers streaming at once (first byte
//           in, not yet ended: a node sends nothing before its first token); streams that ended
//           without a `"done":true` line or with an `"error"` line.
//
// Prints one line, `LOADGEN key=value ...` (times in microseconds), for bench/run.sh.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bench/response_reader.h"

namespace corral::bench {
namespace {

constexpr char kUsage[] = R"(usage:
  corral-loadgen open --port P[,P...] --rate REQ_PER_S --duration S [--warmup S]
                      [--connections N] [--drain S] [--path PATH] [--body JSON]
  corral-loadgen stream --port P[,P...] --streams N --duration S [--ramp S] [--drain S]
                        [--path PATH] [--body JSON]
Targets are 127.0.0.1:P; connections are spread round-robin over the ports.
)";

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t WallNs() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// The node's `"created_at":"2026-12-05T12:48:15.521173405Z"` in a line (UTC, as Ollama writes
// it), as nanoseconds since the epoch; false when the line has none.
bool CreatedAtNs(std::string_view line, int64_t* ns) {
  constexpr std::string_view kKey = "\"created_at\":\"";
  const size_t at = line.find(kKey);
  if (at == std::string_view::npos) return false;
  const std::string_view v = line.substr(at + kKey.size());
  tm t{};
  int consumed = 0;
  const std::string head(v.substr(0, 19));
  if (std::sscanf(head.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &t.tm_year, &t.tm_mon, &t.tm_mday,
                  &t.tm_hour, &t.tm_min, &t.tm_sec, &consumed) != 6 ||
      consumed != 19) {
    return false;
  }
  t.tm_year -= 1900;
  t.tm_mon -= 1;
  int64_t fraction = 0;
  size_t i = 19;
  if (i < v.size() && v[i] == '.') {
    int64_t scale = 100'000'000;
    for (++i; i < v.size() && v[i] >= '0' && v[i] <= '9'; ++i, scale /= 10) {
      fraction += (v[i] - '0') * scale;
    }
  }
  if (i >= v.size() || v[i] != 'Z') return false;  // only UTC, as the node writes it
  *ns = static_cast<int64_t>(::timegm(&t)) * 1'000'000'000 + fraction;
  return true;
}

struct Options {
  std::string mode;
  std::vector<int> ports;
  double rate = 0;
  double duration_s = 5;
  double warmup_s = 1;
  double ramp_s = 1;
  double drain_s = 5;
  int connections = 64;
  int streams = 0;
  std::string path = "/api/generate";
  std::string body;
};

// One connection to a target and the request it carries.
struct Conn {
  enum class Phase { kClosed, kConnecting, kIdle, kBusy };

  size_t index = 0;  // in the loop's connection list; the epoll key
  int fd = -1;
  int port = 0;
  Phase phase = Phase::kClosed;
  int connect_failures = 0;
  bool want_write = false;
  ResponseReader reader;
  const std::string* request = nullptr;
  size_t written = 0;
  int64_t idle_since_ns = 0;
  // The request in flight.
  int64_t intended_ns = 0;  // open mode: when it was due
  int64_t sent_ns = 0;
  bool measured = false;
  // Stream mode: lines of the answer so far.
  int lines = 0;
  int64_t last_line_ns = 0;
  bool saw_done = false;
  bool saw_error = false;
  std::string line;  // the line being received
};

// Sorted samples in nanoseconds; percentiles by the nearest-rank method.
class Samples {
 public:
  void Add(int64_t ns) { values_.push_back(ns); }
  size_t size() const { return values_.size(); }
  void Sort() { std::sort(values_.begin(), values_.end()); }
  // REQUIRES: Sort() after the last Add.
  double PercentileUs(double p) const {
    if (values_.empty()) return 0;
    size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values_.size())));
    rank = std::clamp<size_t>(rank, 1, values_.size());
    return static_cast<double>(values_[rank - 1]) / 1000.0;
  }

 private:
  std::vector<int64_t> values_;
};

// The epoll loop over a set of connections; the modes decide what to send and what to record.
class LoadLoop {
 public:
  explicit LoadLoop(const Options& options) : options_(options) {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) Die("epoll_create1");
  }
  virtual ~LoadLoop() {
    for (auto& c : conns_) CloseConn(*c);
    close(epoll_fd_);
  }

  // Runs until Finished(); returns 0.
  int Run() {
    epoll_event events[256];
    while (true) {
      const int64_t now = NowNs();
      Tick(now);
      if (Finished(now)) break;
      const int64_t wait_ns = std::clamp<int64_t>(NextWakeNs(now) - now, 0, 100'000'000);
      const timespec timeout{static_cast<time_t>(wait_ns / 1'000'000'000),
                             static_cast<long>(wait_ns % 1'000'000'000)};
      const int n = epoll_pwait2(epoll_fd_, events, 256, &timeout, nullptr);
      if (n < 0 && errno != EINTR) Die("epoll_pwait2");
      for (int i = 0; i < n; ++i) {
        Conn& c = *conns_[events[i].data.u64];
        if (c.phase == Conn::Phase::kConnecting) {
          Connected(c, events[i].events);
        } else {
          if (events[i].events & EPOLLOUT) Flush(c);
          if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) Readable(c);
        }
      }
    }
    return 0;
  }

 protected:
  // Hooks for the modes. `now` is the loop's current time.
  virtual void Tick(int64_t now) = 0;
  virtual bool Finished(int64_t now) = 0;
  virtual int64_t NextWakeNs(int64_t now) = 0;
  virtual void OnIdle(Conn& c, int64_t now) = 0;
  virtual void OnBody(Conn& c, std::string_view data, int64_t now) = 0;
  // The request on `c` ended: answered (`ok`: complete with any status) or failed.
  virtual void OnDone(Conn& c, bool ok, int64_t now) = 0;

  [[noreturn]] static void Die(const char* what) {
    std::fprintf(stderr, "corral-loadgen: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
  }

  Conn& AddConn() {
    auto c = std::make_unique<Conn>();
    c->index = conns_.size();
    c->port = options_.ports[c->index % options_.ports.size()];
    conns_.push_back(std::move(c));
    return *conns_.back();
  }

  void Open(Conn& c) {
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) Die("socket");
    const int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(c.port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 &&
        errno != EINPROGRESS) {
      Die("connect");
    }
    c.phase = Conn::Phase::kConnecting;
    epoll_event ev{};
    ev.events = EPOLLOUT | EPOLLIN;
    ev.data.u64 = c.index;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c.fd, &ev) < 0) Die("epoll_ctl add");
  }

  void CloseConn(Conn& c) {
    if (c.fd >= 0) close(c.fd);  // also leaves the epoll set
    c.fd = -1;
    c.phase = Conn::Phase::kClosed;
    c.want_write = false;
  }

  void Reopen(Conn& c) {
    CloseConn(c);
    Open(c);
  }

  void Send(Conn& c, const std::string& request, int64_t now) {
    c.phase = Conn::Phase::kBusy;
    c.reader.Reset();
    c.request = &request;
    c.written = 0;
    c.sent_ns = now;
    c.lines = 0;
    c.saw_done = c.saw_error = false;
    c.line.clear();
    Flush(c);
  }

  const Options& options_;
  std::vector<std::unique_ptr<Conn>> conns_;
  int64_t connect_errors_ = 0;
  int64_t io_errors_ = 0;

 private:
  void Connected(Conn& c, uint32_t events) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
      ++connect_errors_;
      if (++c.connect_failures > 5) {
        std::fprintf(stderr, "corral-loadgen: cannot connect to port %d: %s\n", c.port,
                     std::strerror(err));
        CloseConn(c);
        return;
      }
      Reopen(c);
      return;
    }
    c.connect_failures = 0;
    SetWriteInterest(c, false);
    c.phase = Conn::Phase::kIdle;
    c.idle_since_ns = NowNs();
    OnIdle(c, c.idle_since_ns);
  }

  void SetWriteInterest(Conn& c, bool on) {
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
    ev.data.u64 = c.index;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev) < 0) Die("epoll_ctl mod");
    c.want_write = on;
  }

  void Flush(Conn& c) {
    if (c.phase != Conn::Phase::kBusy || c.request == nullptr) return;
    while (c.written < c.request->size()) {
      const ssize_t n =
          send(c.fd, c.request->data() + c.written, c.request->size() - c.written, MSG_NOSIGNAL);
      if (n > 0) {
        c.written += static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!c.want_write) SetWriteInterest(c, true);
        return;
      } else {
        Failed(c);
        return;
      }
    }
    if (c.want_write) SetWriteInterest(c, false);
  }

  void Readable(Conn& c) {
    char buf[65536];
    while (c.fd >= 0) {
      const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
      const int64_t now = NowNs();
      if (n > 0) {
        if (c.phase != Conn::Phase::kBusy) {  // bytes nobody asked for
          ++io_errors_;
          Reopen(c);
          return;
        }
        const auto result = c.reader.Feed(std::string_view(buf, static_cast<size_t>(n)),
                                          [&](std::string_view d) { OnBody(c, d, now); });
        if (result == ResponseReader::Result::kError) {
          Failed(c);
          return;
        }
        if (result == ResponseReader::Result::kComplete) {
          Completed(c, now);
          return;
        }
      } else if (n == 0) {
        if (c.phase == Conn::Phase::kBusy &&
            c.reader.FeedEof() == ResponseReader::Result::kComplete) {
          CloseConn(c);  // complete, and the server closed
          OnDone(c, true, now);
          if (c.phase == Conn::Phase::kClosed) Open(c);
        } else if (c.phase == Conn::Phase::kBusy) {
          Failed(c);
        } else {
          Reopen(c);  // the server closed an idle keep-alive connection
        }
        return;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return;
      } else if (errno != EINTR) {
        if (c.phase == Conn::Phase::kBusy) {
          Failed(c);
        } else {
          Reopen(c);
        }
        return;
      }
    }
  }

  void Completed(Conn& c, int64_t now) {
    const bool keep = c.reader.keep_alive();
    if (!keep) CloseConn(c);
    c.phase = keep ? Conn::Phase::kIdle : Conn::Phase::kClosed;
    c.idle_since_ns = now;
    OnDone(c, true, now);
    if (c.phase == Conn::Phase::kClosed) {
      Open(c);
    } else if (c.phase == Conn::Phase::kIdle) {
      OnIdle(c, now);
    }
  }

  void Failed(Conn& c) {
    ++io_errors_;
    const int64_t now = NowNs();
    CloseConn(c);
    OnDone(c, false, now);
    Open(c);
  }

  int epoll_fd_ = -1;
};

std::string BuildRequest(const Options& o, int port) {
  return "POST " + o.path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(o.body.size()) +
         "\r\n\r\n" + o.body;
}

class OpenLoop : public LoadLoop {
 public:
  explicit OpenLoop(const Options& o) : LoadLoop(o) {
    for (int port : o.ports) requests_.push_back(BuildRequest(o, port));
    for (int i = 0; i < o.connections; ++i) Open(AddConn());
    // Give the connections a moment to open before the schedule starts.
    start_ns_ = NowNs() + 200'000'000;
    measure_from_ns_ = start_ns_ + static_cast<int64_t>(o.warmup_s * 1e9);
    total_ = static_cast<int64_t>(o.rate * (o.warmup_s + o.duration_s));
    schedule_end_ns_ = start_ns_ + static_cast<int64_t>((o.warmup_s + o.duration_s) * 1e9);
    deadline_ns_ = schedule_end_ns_ + static_cast<int64_t>(o.drain_s * 1e9);
  }

  void Report() {
    const int64_t now = NowNs();
    // What is still unanswered or unsent at the end waited at least until now.
    for (auto& c : conns_) {
      if (c->phase == Conn::Phase::kBusy && c->measured) {
        ++late_;
        latency_.Add(now - c->intended_ns);
      }
    }
    for (int64_t i = next_; i < total_; ++i) {
      if (Due(i) >= measure_from_ns_) {
        ++late_;
        latency_.Add(now - Due(i));
      }
    }
    latency_.Sort();
    service_.Sort();
    const double measured_s = options_.duration_s;
    std::printf(
        "LOADGEN mode=open offered_rps=%.0f achieved_rps=%.0f requests=%zu ok=%lld "
        "err_status=%lld err_io=%lld err_connect=%lld late=%lld p50_us=%.1f p90_us=%.1f "
        "p99_us=%.1f p999_us=%.1f max_us=%.1f service_p50_us=%.1f service_p99_us=%.1f\n",
        options_.rate, static_cast<double>(answered_) / measured_s, latency_.size(),
        static_cast<long long>(answered_), static_cast<long long>(err_status_),
        static_cast<long long>(io_errors_), static_cast<long long>(connect_errors_),
        static_cast<long long>(late_), latency_.PercentileUs(50), latency_.PercentileUs(90),
        latency_.PercentileUs(99), latency_.PercentileUs(99.9), latency_.PercentileUs(100),
        service_.PercentileUs(50), service_.PercentileUs(99));
  }

 protected:
  void Tick(int64_t now) override {
    while (next_ < total_ && Due(next_) <= now && !idle_.empty()) {
      Conn& c = *idle_.back();
      idle_.pop_back();
      if (c.phase != Conn::Phase::kIdle) continue;
      // The servers close keep-alive connections idle for 5 s; do not race them.
      if (now - c.idle_since_ns > 4'000'000'000) {
        Reopen(c);
        continue;
      }
      c.intended_ns = Due(next_);
      c.measured = c.intended_ns >= measure_from_ns_;
      ++next_;
      ++in_flight_;
      Send(c, requests_[c.index % options_.ports.size()], now);
    }
  }

  bool Finished(int64_t now) override {
    return (next_ >= total_ && in_flight_ == 0) || now >= deadline_ns_;
  }

  int64_t NextWakeNs(int64_t now) override {
    if (next_ < total_ && !idle_.empty()) return Due(next_);
    return now + 100'000'000;
  }

  void OnIdle(Conn& c, int64_t) override { idle_.push_back(&c); }
  void OnBody(Conn&, std::string_view, int64_t) override {}

  void OnDone(Conn& c, bool ok, int64_t now) override {
    --in_flight_;
    if (!c.measured) return;
    if (!ok) return;  // counted by the loop as an I/O error
    const int status = c.reader.status();
    if (status < 200 || status > 299) ++err_status_;
    ++answered_;
    latency_.Add(now - c.intended_ns);
    service_.Add(now - c.sent_ns);
  }

 private:
  int64_t Due(int64_t i) const {
    return start_ns_ + static_cast<int64_t>(static_cast<double>(i) * 1e9 / options_.rate);
  }

  std::vector<std::string> requests_;  // one per port (the Host header differs)
  std::vector<Conn*> idle_;            // a stack: the most recently used connection first
  int64_t start_ns_ = 0;
  int64_t measure_from_ns_ = 0;
  int64_t schedule_end_ns_ = 0;
  int64_t deadline_ns_ = 0;
  int64_t total_ = 0;
  int64_t next_ = 0;
  int64_t in_flight_ = 0;
  int64_t answered_ = 0;
  int64_t err_status_ = 0;
  int64_t late_ = 0;
  Samples latency_;
  Samples service_;
};

class StreamLoop : public LoadLoop {
 public:
  explicit StreamLoop(const Options& o) : LoadLoop(o) {
    for (int port : o.ports) requests_.push_back(BuildRequest(o, port));
    for (int i = 0; i < o.streams; ++i) AddConn();
    start_ns_ = NowNs();
    measure_from_ns_ = start_ns_ + static_cast<int64_t>(o.ramp_s * 1e9);
    end_ns_ = measure_from_ns_ + static_cast<int64_t>(o.duration_s * 1e9);
    deadline_ns_ = end_ns_ + static_cast<int64_t>(o.drain_s * 1e9);
  }

  void Report() {
    for (auto& c : conns_) {
      if (c->phase == Conn::Phase::kBusy) ++unfinished_;
    }
    ttft_.Sort();
    gap_.Sort();
    transit_.Sort();
    std::printf(
        "LOADGEN mode=stream streams=%d peak_in_flight=%lld peak_open=%lld requests=%lld ok=%lld "
        "err_status=%lld "
        "err_io=%lld err_connect=%lld err_stream=%lld unfinished=%lld lines=%zu "
        "ttft_p50_us=%.1f ttft_p99_us=%.1f ttft_max_us=%.1f gap_p50_us=%.1f gap_p99_us=%.1f "
        "gap_p999_us=%.1f gap_max_us=%.1f transit_p50_us=%.1f transit_p99_us=%.1f "
        "transit_samples=%zu\n",
        options_.streams, static_cast<long long>(peak_in_flight_),
        static_cast<long long>(peak_open_), static_cast<long long>(requests_done_),
        static_cast<long long>(ok_), static_cast<long long>(err_status_),
        static_cast<long long>(io_errors_), static_cast<long long>(connect_errors_),
        static_cast<long long>(err_stream_), static_cast<long long>(unfinished_),
        gap_.size() + ttft_.size(), ttft_.PercentileUs(50), ttft_.PercentileUs(99),
        ttft_.PercentileUs(100), gap_.PercentileUs(50), gap_.PercentileUs(99),
        gap_.PercentileUs(99.9), gap_.PercentileUs(100), transit_.PercentileUs(50),
        transit_.PercentileUs(99), transit_.size());
  }

 protected:
  void Tick(int64_t now) override {
    // Open the streams evenly over the ramp, so the start is not one burst of connects.
    while (opened_ < conns_.size() && OpenTime(opened_) <= now) Open(*conns_[opened_++]);
  }

  bool Finished(int64_t now) override {
    return (now >= end_ns_ && open_requests_ == 0) || now >= deadline_ns_;
  }

  int64_t NextWakeNs(int64_t now) override {
    if (opened_ < conns_.size()) return OpenTime(opened_);
    return now < end_ns_ ? end_ns_ : now + 100'000'000;
  }

  void OnIdle(Conn& c, int64_t now) override {
    if (now >= end_ns_) return;
    c.measured = now >= measure_from_ns_;
    peak_in_flight_ = std::max(peak_in_flight_, ++open_requests_);
    Send(c, requests_[c.index % options_.ports.size()], now);
  }

  void OnBody(Conn& c, std::string_view data, int64_t now) override {
    int64_t wall_ns = 0;  // read once per arrival, when a line needs it
    if (c.lines == 0 && c.line.empty()) {
      peak_open_ = std::max(peak_open_, ++open_streams_);
    }
    while (!data.empty()) {
      const size_t nl = data.find('\n');
      c.line.append(data.substr(0, nl));
      if (nl == std::string_view::npos) return;
      data.remove_prefix(nl + 1);
      if (c.line.find("\"done\":true") != std::string::npos) c.saw_done = true;
      if (c.line.find("\"error\"") != std::string::npos) c.saw_error = true;
      if (c.measured) {
        if (c.lines == 0) {
          ttft_.Add(now - c.sent_ns);
        } else {
          gap_.Add(now - c.last_line_ns);
          // Transit: from the node's timestamp to here, free of the node's pacing jitter.
          int64_t created = 0;
          if (CreatedAtNs(c.line, &created)) {
            if (wall_ns == 0) wall_ns = WallNs();
            transit_.Add(wall_ns - created);
          }
        }
      }
      c.line.clear();
      c.last_line_ns = now;
      ++c.lines;
    }
  }

  void OnDone(Conn& c, bool ok, int64_t) override {
    --open_requests_;
    if (c.lines > 0 || !c.line.empty()) --open_streams_;
    ++requests_done_;
    if (!ok) return;
    const int status = c.reader.status();
    if (status < 200 || status > 299) {
      ++err_status_;
    } else if (!c.saw_done || c.saw_error) {
      ++err_stream_;
    } else {
      ++ok_;
    }
  }

 private:
  int64_t OpenTime(size_t i) const {
    return start_ns_ + static_cast<int64_t>(options_.ramp_s * 1e9 * static_cast<double>(i) /
                                            static_cast<double>(conns_.size()));
  }

  std::vector<std::string> requests_;
  size_t opened_ = 0;
  int64_t start_ns_ = 0;
  int64_t measure_from_ns_ = 0;
  int64_t end_ns_ = 0;
  int64_t deadline_ns_ = 0;
  int64_t open_requests_ = 0;  // sent and not yet ended
  int64_t open_streams_ = 0;   // answers whose first body byte arrived and that have not ended
  int64_t peak_open_ = 0;
  int64_t peak_in_flight_ = 0;
  int64_t requests_done_ = 0;
  int64_t ok_ = 0;
  int64_t err_status_ = 0;
  int64_t err_stream_ = 0;
  int64_t unfinished_ = 0;
  Samples ttft_;
  Samples gap_;
  Samples transit_;  // node's created_at to arrival, for every line after the first
};

bool ParseOptions(int argc, char** argv, Options* o) {
  if (argc < 2) return false;
  o->mode = argv[1];
  if (o->mode != "open" && o->mode != "stream") return false;
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (flag == "--port") {
      for (std::string_view s(v); !s.empty();) {
        const size_t comma = s.find(',');
        o->ports.push_back(std::atoi(std::string(s.substr(0, comma)).c_str()));
        s.remove_prefix(comma == std::string_view::npos ? s.size() : comma + 1);
      }
    } else if (flag == "--rate") {
      o->rate = std::atof(v);
    } else if (flag == "--duration") {
      o->duration_s = std::atof(v);
    } else if (flag == "--warmup") {
      o->warmup_s = std::atof(v);
    } else if (flag == "--ramp") {
      o->ramp_s = std::atof(v);
    } else if (flag == "--drain") {
      o->drain_s = std::atof(v);
    } else if (flag == "--connections") {
      o->connections = std::atoi(v);
    } else if (flag == "--streams") {
      o->streams = std::atoi(v);
    } else if (flag == "--path") {
      o->path = v;
    } else if (flag == "--body") {
      o->body = v;
    } else {
      return false;
    }
  }
  if (o->ports.empty() || o->duration_s <= 0) return false;
  for (int p : o->ports) {
    if (p <= 0 || p > 65535) return false;
  }
  if (o->mode == "open" && (o->rate <= 0 || o->connections <= 0)) return false;
  if (o->mode == "stream" && o->streams <= 0) return false;
  if (o->body.empty()) {
    o->body = std::string(R"({"model":"llama3.2","prompt":"Why is the sky blue?","stream":)") +
              (o->mode == "open" ? "false}" : "true}");
  }
  return true;
}

// Thousands of streams need as many descriptors: take the hard limit.
void RaiseDescriptorLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

}  // namespace
}  // namespace corral::bench

int main(int argc, char** argv) {
  using namespace corral::bench;
  Options options;
  if (!ParseOptions(argc, argv, &options)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  RaiseDescriptorLimit();
  if (options.mode == "open") {
    OpenLoop loop(options);
    loop.Run();
    loop.Report();
  } else {
    StreamLoop loop(options);
    loop.Run();
    loop.Report();
  }
  return 0;
}
