// corral-routing-bench: the trace generator and the replay driver of `make bench-routing`
// (bench/routing/run.sh, docs/routing-quality.md).
//
//   trace   writes a seeded trace (bench/routing/trace.h) to a file.
//   replay  sends every request of a trace to one target at the trace's times, whatever happened
//           to the requests before it (open loop): each request gets its own thread and its own
//           connection when it is due, so a slow answer never delays the next arrival. For each
//           request it records the time from when it was due to the first NDJSON line carrying
//           content (time to first token), its status, and whether it ended with a `"done":true`
//           line and no error line. Writes one line per request to --results and prints one
//           summary line, `ROUTING key=value ...` (times in milliseconds), for run.sh.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/response_reader.h"
#include "bench/routing/trace.h"

namespace corral::bench {
namespace {

constexpr char kUsage[] = R"(usage:
  corral-routing-bench trace --models NAME=SIZE,... --out FILE [--seed N] [--rate REQ_PER_S]
                             [--duration S] [--zipf S] [--chat-fraction F]
  corral-routing-bench replay --trace FILE --port P --results FILE [--timeout-s S]
                              [--keep-alive DURATION]
The replay target is http://127.0.0.1:P; requests are streamed /api/generate and /api/chat.
)";

using Clock = std::chrono::steady_clock;

struct Outcome {
  int status = 0;
  bool ok = false;
  int64_t ttft_us = -1;   // from the due time; -1 without a content line
  int64_t total_us = -1;  // from the due time to the end of the answer
  int64_t start_lag_us = 0;
  std::string error;
};

std::string RequestBody(const TraceRequest& r, size_t index, const std::string& keep_alive) {
  std::string ka;
  if (!keep_alive.empty()) ka = ",\"keep_alive\":\"" + keep_alive + "\"";
  const std::string question = "Request " + std::to_string(index) + ": why is the sky blue?";
  if (r.route == TraceRoute::kChat) {
    return "{\"model\":\"" + r.model + "\",\"messages\":[{\"role\":\"user\",\"content\":\"" +
           question + "\"}],\"stream\":true" + ka + "}";
  }
  return "{\"model\":\"" + r.model + "\",\"prompt\":\"" + question + "\",\"stream\":true" + ka +
         "}";
}

// True when an NDJSON line carries generated text: a non-empty "response" (generate) or
// "content" (chat message).
bool HasContent(std::string_view line) {
  for (std::string_view key :
       {std::string_view("\"response\":\""), std::string_view("\"content\":\"")}) {
    const size_t at = line.find(key);
    if (at != std::string_view::npos && at + key.size() < line.size() &&
        line[at + key.size()] != '"') {
      return true;
    }
  }
  return false;
}

// One request on its own connection, started at `due`.
Outcome Send(int port, const std::string& path, const std::string& body, Clock::time_point due,
             std::chrono::milliseconds timeout) {
  Outcome out;
  const auto since_due = [&] {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - due).count();
  };
  out.start_lag_us = since_due();
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    out.error = std::string("socket: ") + std::strerror(errno);
    return out;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    out.error = std::string("connect: ") + std::strerror(errno);
    ::close(fd);
    return out;
  }
  std::string request = "POST " + path +
                        " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        "Connection: close\r\nContent-Length: " +
                        std::to_string(body.size()) + "\r\n\r\n" + body;
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      out.error = std::string("send: ") + std::strerror(errno);
      ::close(fd);
      return out;
    }
    sent += static_cast<size_t>(n);
  }
  ResponseReader reader;
  std::string line;
  bool saw_done = false;
  bool saw_error = false;
  const auto sink = [&](std::string_view bytes) {
    while (!bytes.empty()) {
      const size_t nl = bytes.find('\n');
      line.append(bytes.substr(0, nl));
      if (nl == std::string_view::npos) return;
      bytes.remove_prefix(nl + 1);
      if (out.ttft_us < 0 && HasContent(line)) out.ttft_us = since_due();
      if (line.find("\"error\"") != std::string::npos) {
        saw_error = true;
        if (out.error.empty()) out.error = line.substr(0, 200);
      }
      if (line.find("\"done\":true") != std::string::npos) saw_done = true;
      line.clear();
    }
  };
  const auto deadline = due + timeout;
  ResponseReader::Result result = ResponseReader::Result::kNeedMore;
  char buf[16384];
  while (result == ResponseReader::Result::kNeedMore) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) == 0) {
      out.error = "timed out";
      break;
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      out.error = std::string("recv: ") + std::strerror(errno);
      break;
    }
    result = n == 0 ? reader.FeedEof() : reader.Feed(std::string_view(buf, n), sink);
    if (result == ResponseReader::Result::kError && out.error.empty()) {
      out.error = "bad response: " + reader.error();
    }
  }
  ::close(fd);
  if (!line.empty()) sink("\n");  // a last line without its newline
  out.status = reader.status();
  out.total_us = since_due();
  out.ok = result == ResponseReader::Result::kComplete && out.status == 200 && saw_done &&
           !saw_error && out.ttft_us >= 0;
  if (!out.ok && out.error.empty()) {
    out.error = out.status != 200 ? "status " + std::to_string(out.status)
                                  : (saw_done ? "no content line" : "no done line");
  }
  return out;
}

bool ReadFile(const std::string& path, std::string* text) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *text = ss.str();
  return true;
}

// Nearest-rank percentile of sorted values.
double Percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]);
}

int Replay(const std::string& trace_path, int port, const std::string& results_path,
           std::chrono::milliseconds timeout, const std::string& keep_alive) {
  std::string text, error;
  std::vector<TraceRequest> trace;
  if (!ReadFile(trace_path, &text) || !ParseTrace(text, &trace, &error)) {
    std::cerr << "corral-routing-bench: cannot read trace " << trace_path << ": " << error << "\n";
    return 1;
  }
  std::vector<Outcome> outcomes(trace.size());
  std::vector<std::thread> threads;
  threads.reserve(trace.size());
  std::atomic<int> in_flight{0};
  int peak_in_flight = 0;
  // The first request is due shortly after start, so every thread is created on time.
  const Clock::time_point start = Clock::now() + std::chrono::milliseconds(100);
  for (size_t i = 0; i < trace.size(); ++i) {
    const TraceRequest& r = trace[i];
    const Clock::time_point due = start + std::chrono::microseconds(r.due_us);
    std::this_thread::sleep_until(due);
    peak_in_flight = std::max(peak_in_flight, in_flight.fetch_add(1) + 1);
    threads.emplace_back([&, i, due] {
      const TraceRequest& req = trace[i];
      outcomes[i] = Send(port, req.route == TraceRoute::kChat ? "/api/chat" : "/api/generate",
                         RequestBody(req, i, keep_alive), due, timeout);
      in_flight.fetch_sub(1);
    });
  }
  for (std::thread& t : threads) t.join();
  const double wall_s = std::chrono::duration<double>(Clock::now() - start).count();

  std::ofstream results(results_path);
  results << "# index due_us route model status ok ttft_us total_us error\n";
  std::vector<int64_t> ttft;
  int failed = 0;
  int64_t max_lag = 0;
  double sum = 0;
  for (size_t i = 0; i < trace.size(); ++i) {
    const Outcome& o = outcomes[i];
    max_lag = std::max(max_lag, o.start_lag_us);
    results << i << ' ' << trace[i].due_us << ' '
            << (trace[i].route == TraceRoute::kChat ? "chat" : "generate") << ' ' << trace[i].model
            << ' ' << o.status << ' ' << (o.ok ? 1 : 0) << ' ' << o.ttft_us << ' ' << o.total_us
            << ' ' << (o.error.empty() ? "-" : o.error) << '\n';
    if (o.ok) {
      ttft.push_back(o.ttft_us);
      sum += static_cast<double>(o.ttft_us);
    } else {
      ++failed;
      if (failed <= 5)
        std::cerr << "corral-routing-bench: request " << i << " failed: " << o.error << "\n";
    }
  }
  std::sort(ttft.begin(), ttft.end());
  const double mean_ms = ttft.empty() ? 0 : sum / static_cast<double>(ttft.size()) / 1000.0;
  std::printf(
      "ROUTING requests=%zu ok=%zu failed=%d ttft_mean_ms=%.1f ttft_p50_ms=%.1f ttft_p99_ms=%.1f "
      "ttft_max_ms=%.1f peak_in_flight=%d start_lag_max_ms=%.1f wall_s=%.1f\n",
      trace.size(), ttft.size(), failed, mean_ms, Percentile(ttft, 50) / 1000.0,
      Percentile(ttft, 99) / 1000.0, ttft.empty() ? 0.0 : static_cast<double>(ttft.back()) / 1000.0,
      peak_in_flight, static_cast<double>(max_lag) / 1000.0, wall_s);
  return 0;
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string mode = argv[1];
  TraceSpec spec;
  std::string models, out, trace, results, keep_alive;
  int port = 0;
  double timeout_s = 120;
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "corral-routing-bench: " << flag << " needs a value\n" << kUsage;
      return 2;
    }
    const std::string value = argv[++i];
    char* end = nullptr;
    const auto number = [&](double* d) {
      *d = std::strtod(value.c_str(), &end);
      return end != value.c_str() && *end == '\0';
    };
    double d = 0;
    bool good = true;
    if (flag == "--models") {
      models = value;
    } else if (flag == "--out") {
      out = value;
    } else if (flag == "--seed") {
      spec.seed = std::strtoull(value.c_str(), &end, 10);
      good = *end == '\0' && !value.empty();
    } else if (flag == "--rate") {
      good = number(&spec.rate_per_s) && spec.rate_per_s > 0;
    } else if (flag == "--duration") {
      good = number(&spec.duration_s) && spec.duration_s > 0;
    } else if (flag == "--zipf") {
      good = number(&spec.zipf_exponent) && spec.zipf_exponent >= 0;
    } else if (flag == "--chat-fraction") {
      good = number(&spec.chat_fraction) && spec.chat_fraction >= 0 && spec.chat_fraction <= 1;
    } else if (flag == "--trace") {
      trace = value;
    } else if (flag == "--port") {
      good = number(&d) && d > 0 && d < 65536;
      port = static_cast<int>(d);
    } else if (flag == "--results") {
      results = value;
    } else if (flag == "--timeout-s") {
      good = number(&timeout_s) && timeout_s > 0;
    } else if (flag == "--keep-alive") {
      keep_alive = value;
    } else {
      std::cerr << "corral-routing-bench: unknown flag " << flag << "\n" << kUsage;
      return 2;
    }
    if (!good) {
      std::cerr << "corral-routing-bench: bad value for " << flag << ": " << value << "\n";
      return 2;
    }
  }
  if (mode == "trace") {
    std::string error;
    if (out.empty() || !ParseTraceModels(models, &spec.models, &error)) {
      std::cerr << "corral-routing-bench: trace needs --out FILE and --models: " << error << "\n";
      return 2;
    }
    const std::vector<TraceRequest> requests = GenerateTrace(spec);
    std::ofstream file(out, std::ios::binary);
    file << FormatTrace(spec, requests);
    if (!file.flush()) {
      std::cerr << "corral-routing-bench: cannot write " << out << "\n";
      return 1;
    }
    std::printf("TRACE requests=%zu\n", requests.size());
    return 0;
  }
  if (mode == "replay") {
    if (trace.empty() || port == 0 || results.empty()) {
      std::cerr << "corral-routing-bench: replay needs --trace, --port and --results\n";
      return 2;
    }
    return Replay(trace, port, results,
                  std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)), keep_alive);
  }
  std::cerr << kUsage;
  return 2;
}

}  // namespace
}  // namespace corral::bench

int main(int argc, char** argv) { return corral::bench::Main(argc, argv); }
