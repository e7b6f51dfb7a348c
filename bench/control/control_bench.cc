// corral-control-bench: how fast a change made through corral-control's Admin API reaches the
// corral-proxy processes watching it. Run by bench/control.sh; see docs/performance.md.
//
// Everything runs on this machine, started here and stopped on exit (also when the tool is
// interrupted: children are killed from the signal handler and carry PR_SET_PDEATHSIG):
//   * a few corral-sim nodes listening on 0.0.0.0, so one sim answers on every 127.x.y.z address
//     and each registered node can have its own URL (the registry refuses two nodes on one URL);
//   * one corral-control (its own data dir, probing on with the longest interval, discovery
//     off), so every node is probed once when it is registered and the snapshots carry what a
//     real fleet's do (health, installed and loaded models with the node's own JSON) while no
//     probe round runs during the measurements;
//   * N corral-proxy processes watching it, each keeping its on-disk snapshot copy.
//
// Figures:
//   1. Propagation, small fleet: UpdateNode (weight toggled) on one node, timed from just before
//      the call until every proxy serves the new version. "Serves" is read from each proxy's own
//      GET /api/proxy/state (the version of the routing table requests are routed with), polled
//      over keep-alive connections. A second series times the same change until ListProxies shows
//      every proxy's ack, which also includes the proxy's disk write and its Report call.
//   2. Registering `--fleet-nodes` nodes with sequential CreateNode calls (as a script would),
//      and the time until all are probed and every proxy serves the result.
//   3. Propagation with that fleet: DisableNode / EnableNode alternately on one node, until every
//      proxy's GET /api/proxy reports the new available-node count. The state document lists
//      every node (hundreds of KB at this size), so polling it would load the proxies being
//      measured; the health answer is a few bytes and changes exactly when the new table is in.
//
// Rows `| figure | measured | target | holds? |` go to stdout, progress to stderr.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <httplib.h>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "corral/v1/control.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::duration<double, std::milli>;

struct Flags {
  std::string bin_dir;
  std::string work_dir;  // empty: a temp dir, removed at the end
  int proxies = 10;
  int iterations = 200;
  int small_nodes = 8;
  int fleet_nodes = 1000;
  int fleet_iterations = 20;
  int sims = 2;
  double target_ms = 100;
  double fleet_target_ms = 1000;
};

void Progress(const std::string& line) { std::cerr << "control-bench: " << line << std::endl; }

// ---- child processes ------------------------------------------------------------------------

// Pids of running children, for the signal handler and Fail (async-signal-safe access only).
constexpr size_t kMaxChildren = 64;
std::array<std::atomic<pid_t>, kMaxChildren> g_children{};

void KillChildren() {
  for (auto& pid : g_children) {
    const pid_t p = pid.load();
    if (p > 0) kill(p, SIGKILL);
  }
}

void KillChildrenAndExit(int sig) {
  KillChildren();
  _exit(128 + sig);
}

// Ends the run: the children are killed, their logs stay in the work dir.
[[noreturn]] void Fail(const std::string& why) {
  std::cerr << "control-bench: FAILED: " << why << std::endl;
  KillChildren();
  std::exit(1);
}

class Child {
 public:
  Child(const std::string& binary, const std::vector<std::string>& args, const std::string& log) {
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(binary.c_str()));
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ < 0) Fail("fork: " + std::string(strerror(errno)));
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
    for (auto& slot : g_children) {
      pid_t empty = 0;
      if (slot.compare_exchange_strong(empty, pid_)) break;
    }
  }
  ~Child() { Stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  bool Running() {
    if (pid_ <= 0) return false;
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      Forget();
      return false;
    }
    return true;
  }
  // SIGTERM, and SIGKILL if the process has not exited within 5 s.
  void Stop() {
    if (!Running()) return;
    kill(pid_, SIGTERM);
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (Clock::now() < deadline) {
      if (!Running()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    Forget();
  }

 private:
  void Forget() {
    for (auto& slot : g_children) {
      pid_t mine = pid_;
      slot.compare_exchange_strong(mine, 0);
    }
    pid_ = -1;
  }
  pid_t pid_ = -1;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Polls `pred` until it holds or `timeout` passes; `pause` between tries.
bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
               std::chrono::microseconds pause = std::chrono::milliseconds(5)) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(pause);
  }
}

// Waits for the --port-file a child writes once it listens.
int WaitPort(Child& child, const std::string& port_file, const std::string& what) {
  int port = 0;
  const bool ok = WaitUntil(
      [&] {
        if (!child.Running()) Fail(what + " exited at start; see its log in the work dir");
        port = std::atoi(ReadFile(port_file).c_str());
        return port > 0;
      },
      std::chrono::seconds(20));
  if (!ok) Fail(what + " wrote no port to " + port_file);
  return port;
}

// ---- the Admin API ----------------------------------------------------------------------------

class Admin {
 public:
  Admin(int port, std::string token)
      : stub_(corral::v1::Admin::NewStub(grpc::CreateChannel(
            "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()))),
        token_(std::move(token)) {}

  template <typename Req, typename Resp>
  grpc::Status Call(grpc::Status (corral::v1::Admin::Stub::*method)(grpc::ClientContext*,
                                                                    const Req&, Resp*),
                    const Req& req, Resp* resp) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token_);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return (stub_.get()->*method)(&ctx, req, resp);
  }
  void Must(const grpc::Status& status, const std::string& what) {
    if (!status.ok()) Fail(what + ": " + status.error_message());
  }

  corral::v1::FleetState State() {
    corral::v1::FleetState state;
    Must(Call(&corral::v1::Admin::Stub::GetFleetState, corral::v1::GetFleetStateRequest(), &state),
         "GetFleetState");
    return state;
  }
  corral::v1::ListProxiesResponse Proxies() {
    corral::v1::ListProxiesResponse resp;
    Must(Call(&corral::v1::Admin::Stub::ListProxies, corral::v1::ListProxiesRequest(), &resp),
         "ListProxies");
    return resp;
  }

 private:
  std::unique_ptr<corral::v1::Admin::Stub> stub_;
  std::string token_;
};

// ---- observing the proxies ------------------------------------------------------------------

class ProxyPoller {
 public:
  explicit ProxyPoller(const std::vector<int>& ports) {
    for (int port : ports) {
      auto cli = std::make_unique<httplib::Client>("127.0.0.1", port);
      cli->set_keep_alive(true);
      cli->set_connection_timeout(2);
      cli->set_read_timeout(5);
      clients_.push_back(std::move(cli));
    }
  }
  size_t size() const { return clients_.size(); }

  // GET `path` of proxy `i`, parsed; null when it does not answer with JSON.
  nlohmann::json Get(size_t i, const std::string& path) {
    auto res = clients_[i]->Get(path);
    if (!res) return nullptr;
    return nlohmann::json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  }

  struct Seen {
    Clock::time_point first;  // the first proxy seen done
    Clock::time_point last;   // the last one
  };
  // Polls every proxy's `path` until `done(json)` holds for each; returns when the first and the
  // last were seen, or nothing when `timeout` passed first. A proxy seen done is not asked again.
  // Between sweeps it pauses briefly, so the processes measured keep the CPU.
  std::optional<Seen> AllSeen(const std::string& path,
                                           const std::function<bool(const nlohmann::json&)>& done,
                                           std::chrono::milliseconds timeout) {
    std::vector<size_t> pending(clients_.size());
    for (size_t i = 0; i < pending.size(); ++i) pending[i] = i;
    Seen seen{};
    bool any = false;
    const bool ok = WaitUntil(
        [&] {
          std::vector<size_t> still;
          for (size_t i : pending) {
            const nlohmann::json doc = Get(i, path);
            if (!doc.is_null() && done(doc)) {
              seen.last = Clock::now();
              if (!any) seen.first = seen.last;
              any = true;
            } else {
              still.push_back(i);
            }
          }
          pending.swap(still);
          return pending.empty();
        },
        timeout, std::chrono::microseconds(200));
    if (!ok) return std::nullopt;
    return seen;
  }

  // The snapshot version proxy `i` serves (0 when unknown).
  uint64_t Version(size_t i) {
    const nlohmann::json doc = Get(i, "/api/proxy/state");
    return doc.is_null() ? 0 : SnapshotVersion(doc);
  }
  static uint64_t SnapshotVersion(const nlohmann::json& state) {
    const auto it = state.find("snapshot");
    if (it == state.end() || !it->is_object()) return 0;
    return it->value("version", uint64_t{0});
  }

 private:
  std::vector<std::unique_ptr<httplib::Client>> clients_;
};

// ---- statistics ---------------------------------------------------------------------------

// Nearest-rank percentile of `samples` (ms); p in (0, 1].
double Percentile(std::vector<double> samples, double p) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(samples.size())));
  return samples[std::clamp<size_t>(rank, 1, samples.size()) - 1];
}

std::string Ms(double ms) {
  char buf[32];
  if (ms >= 1000) {
    std::snprintf(buf, sizeof buf, "%.1f s", ms / 1000);
  } else {
    std::snprintf(buf, sizeof buf, ms < 10 ? "%.2f ms" : "%.1f ms", ms);
  }
  return buf;
}

// A target as written in the table: "100 ms", "1 s".
std::string TargetText(double ms) {
  char buf[32];
  if (ms >= 1000) {
    std::snprintf(buf, sizeof buf, "%g s", ms / 1000);
  } else {
    std::snprintf(buf, sizeof buf, "%g ms", ms);
  }
  return buf;
}

std::string Row(const std::string& figure, const std::string& measured, const std::string& target,
                const std::string& holds) {
  return "| " + figure + " | " + measured + " | " + target + " | " + holds + " |";
}

// The 1, 5 and 15 minute load averages: the figures depend on what else the machine runs.
std::string LoadAverage() {
  std::string text = ReadFile("/proc/loadavg");
  const size_t third = text.find(' ', text.find(' ', text.find(' ') + 1) + 1);
  return third == std::string::npos ? text : text.substr(0, third);
}

// ---- the benchmark ----------------------------------------------------------------------------

class Bench {
 public:
  explicit Bench(Flags flags) : flags_(std::move(flags)) {}
  ~Bench() { StopAll(); }

  std::vector<std::string> Run() {
    Progress("load average at start: " + LoadAverage());
    StartProcesses();
    std::vector<std::string> rows;

    Progress("registering " + std::to_string(flags_.small_nodes) + " nodes");
    RegisterNodes("node-", flags_.small_nodes, 0);
    Settle(flags_.small_nodes);
    Progress("figure 1: " + std::to_string(flags_.iterations) +
             " changes, observed at the proxies");
    Series served = Propagation(/*observe_acks=*/false);
    Progress("figure 1: " + std::to_string(flags_.iterations) + " changes, observed as acks");
    Series acked = Propagation(/*observe_acks=*/true);
    const std::string n = std::to_string(flags_.proxies);
    const std::string its = std::to_string(flags_.iterations);
    Describe("figure 1, at the proxies", served);
    Describe("figure 1, acks", acked);
    rows.push_back(QuantileRow("control: change → all " + n + " proxies serve it, p50 / p99 of " +
                                   its + " (UpdateNode, " + std::to_string(flags_.small_nodes) +
                                   " nodes)",
                               served, 0.99, "p99 < ", flags_.target_ms));
    rows.push_back(QuantileRow("control: change → all " + n +
                                   " acks in ListProxies, p50 / p99 of " + its + " (same)",
                               acked, 0.99, "p99 < ", flags_.target_ms));

    const int total = flags_.small_nodes + flags_.fleet_nodes;
    const std::string fleet = std::to_string(flags_.fleet_nodes);
    Progress("registering " + fleet + " nodes");
    const auto reg_start = Clock::now();
    RegisterNodes("fleet-", flags_.fleet_nodes, flags_.small_nodes);
    const double reg_ms = Millis(Clock::now() - reg_start).count();
    Progress("registered in " + Ms(reg_ms) + "; waiting until all are probed and served");
    Settle(total);
    const double settle_ms = Millis(Clock::now() - reg_start).count();
    rows.push_back(Row("control: register " + fleet + " nodes, one CreateNode after another / " +
                           "until all are probed and every proxy serves them",
                       Ms(reg_ms) + " (" + Ms(reg_ms / flags_.fleet_nodes) + " per node) / " +
                           Ms(settle_ms),
                       "—", "—"));

    Progress("figure 2: " + std::to_string(flags_.fleet_iterations) + " changes with " +
             std::to_string(total) + " nodes");
    Series big = FleetPropagation(total);
    Describe("figure 2", big);
    const auto snapshot_bytes = std::filesystem::file_size(ProxySnapshotPath(0));
    char size[64];
    std::snprintf(size, sizeof size, "%.1f MB", static_cast<double>(snapshot_bytes) / 1e6);
    rows.push_back(QuantileRow("control: " + std::to_string(total) +
                                   " nodes, change → all " + n + " proxies serve it, p50 / max of " +
                                   std::to_string(flags_.fleet_iterations) +
                                   " (Disable/EnableNode; snapshot " + size + " as JSON)",
                               big, 1.0, "max < ", flags_.fleet_target_ms));
    Progress("load average at the end: " + LoadAverage());
    StopAll();
    return rows;
  }

 private:
  struct Series {
    std::vector<double> total_ms;  // call start → last proxy seen
    std::vector<double> call_ms;   // the admin call alone
    std::vector<double> first_ms;  // call start → first proxy seen (proxy observation only)
  };

  std::string Bin(const std::string& name) const { return flags_.bin_dir + "/" + name; }
  std::string Work(const std::string& name) const { return flags_.work_dir + "/" + name; }
  std::string ProxySnapshotPath(int i) const {
    return Work("proxy-" + std::to_string(i) + ".snapshot.json");
  }

  void StartProcesses() {
    for (int i = 0; i < flags_.sims; ++i) {
      const std::string port_file = Work("sim-" + std::to_string(i) + ".port");
      sims_.push_back(std::make_unique<Child>(
          Bin("corral-sim"),
          std::vector<std::string>{"--listen", "0.0.0.0:0", "--port-file", port_file, "--models",
                                   "llama3.2:latest,qwen3:8b,all-minilm:latest", "--fast",
                                   "--threads", "64", "--log-level", "warn"},
          Work("sim-" + std::to_string(i) + ".log")));
      sim_ports_.push_back(WaitPort(*sims_.back(), port_file, "corral-sim"));
    }
    const std::string data_dir = Work("control-data");
    const std::string port_file = Work("control.port");
    control_ = std::make_unique<Child>(
        Bin("corral-control"),
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--port-file", port_file, "--data-dir",
                                 data_dir, "--probe-interval-ms", "3600000", "--no-discovery",
                                 "--http-listen", "off", "--log-level", "warn"},
        Work("control.log"));
    const int control_port = WaitPort(*control_, port_file, "corral-control");
    std::string token;
    if (!WaitUntil(
            [&] {
              token = ReadFile(data_dir + "/admin.token");
              while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
                token.pop_back();
              }
              return !token.empty();
            },
            std::chrono::seconds(10))) {
      Fail("no admin token in " + data_dir);
    }
    admin_ = std::make_unique<Admin>(control_port, token);

    std::vector<int> proxy_ports;
    for (int i = 0; i < flags_.proxies; ++i) {
      const std::string id = "bench-proxy-" + std::to_string(i);
      const std::string pf = Work(id + ".port");
      proxies_.push_back(std::make_unique<Child>(
          Bin("corral-proxy"),
          std::vector<std::string>{"--listen", "127.0.0.1:0", "--port-file", pf, "--control",
                                   "127.0.0.1:" + std::to_string(control_port),
                                   "--control-token-file", data_dir + "/proxy.token", "--id", id,
                                   "--snapshot", ProxySnapshotPath(i), "--max-streams", "64",
                                   "--log-level", "warn"},
          Work(id + ".log")));
      proxy_ports.push_back(WaitPort(*proxies_.back(), pf, "corral-proxy " + id));
    }
    poller_ = std::make_unique<ProxyPoller>(proxy_ports);
    Progress("started " + std::to_string(flags_.sims) + " sims, corral-control on port " +
             std::to_string(control_port) + ", " + std::to_string(flags_.proxies) + " proxies");
  }

  void StopAll() {
    // Proxies first, so none logs a lost control plane; the sims last.
    for (auto& p : proxies_) p->Stop();
    if (control_) control_->Stop();
    for (auto& s : sims_) s->Stop();
  }

  // Registers nodes `prefix`0000.. with one URL each: 127.1.a.b on one of the sims' ports.
  void RegisterNodes(const std::string& prefix, int count, int first_index) {
    for (int i = 0; i < count; ++i) {
      const int k = first_index + i;
      char name[64];
      std::snprintf(name, sizeof name, "%s%04d", prefix.c_str(), i);
      corral::v1::CreateNodeRequest req;
      req.set_name(name);
      req.set_url("http://127.1." + std::to_string(k / 250) + "." + std::to_string(k % 250 + 1) +
                  ":" + std::to_string(sim_ports_[static_cast<size_t>(k) % sim_ports_.size()]));
      corral::v1::NodeInfo info;
      admin_->Must(admin_->Call(&corral::v1::Admin::Stub::CreateNode, req, &info),
                   std::string("CreateNode ") + name);
    }
  }

  // Waits until `count` nodes are healthy with their models, and every proxy serves the current
  // version and has acknowledged it.
  void Settle(int count) {
    uint64_t version = 0;
    if (!WaitUntil(
            [&] {
              const corral::v1::FleetState state = admin_->State();
              if (state.nodes_size() != count) return false;
              for (const auto& n : state.nodes()) {
                if (n.node().health() != corral::v1::HEALTH_HEALTHY || n.node().models().empty()) {
                  return false;
                }
              }
              version = state.snapshot_version();
              return true;
            },
            // GetFleetState reads every node under the registry mutex the prober's writes need:
            // asking often would slow down what it waits for.
            std::chrono::seconds(120), std::chrono::milliseconds(250))) {
      Fail("nodes were not all probed healthy within 120 s");
    }
    WaitInSync(version);
  }

  void WaitInSync(uint64_t version) {
    const bool ok = WaitUntil(
        [&] {
          for (size_t i = 0; i < poller_->size(); ++i) {
            if (poller_->Version(i) != version) return false;
          }
          const corral::v1::ListProxiesResponse resp = admin_->Proxies();
          if (resp.proxies_size() != flags_.proxies) return false;
          for (const auto& p : resp.proxies()) {
            if (!p.connected() || p.applied_version() != version) return false;
          }
          return true;
        },
        std::chrono::seconds(60), std::chrono::milliseconds(20));
    if (!ok) Fail("proxies did not all serve and ack version " + std::to_string(version));
  }

  Series Propagation(bool observe_acks) {
    Series series;
    uint64_t version = admin_->State().snapshot_version();
    for (int i = 0; i < flags_.iterations; ++i) {
      corral::v1::UpdateNodeRequest req;
      req.set_name("node-0000");
      req.set_weight(weight_ = weight_ == 1 ? 2 : 1);
      corral::v1::NodeInfo info;
      const uint64_t before = version;
      const auto start = Clock::now();
      admin_->Must(admin_->Call(&corral::v1::Admin::Stub::UpdateNode, req, &info), "UpdateNode");
      const auto called = Clock::now();
      std::optional<Clock::time_point> seen;
      std::optional<ProxyPoller::Seen> at_proxies;
      if (observe_acks) {
        const bool ok = WaitUntil(
            [&] {
              const corral::v1::ListProxiesResponse resp = admin_->Proxies();
              for (const auto& p : resp.proxies()) {
                if (p.applied_version() <= before) return false;
              }
              return true;
            },
            std::chrono::seconds(10), std::chrono::microseconds(200));
        if (ok) seen = Clock::now();
      } else {
        at_proxies = poller_->AllSeen(
            "/api/proxy/state",
            [before](const nlohmann::json& s) { return ProxyPoller::SnapshotVersion(s) > before; },
            std::chrono::seconds(10));
        if (at_proxies) {
          seen = at_proxies->last;
          series.first_ms.push_back(Millis(at_proxies->first - start).count());
        }
      }
      if (!seen) Fail("a change did not reach every proxy within 10 s");
      series.total_ms.push_back(Millis(*seen - start).count());
      series.call_ms.push_back(Millis(called - start).count());
      // Untimed: the new version, and every proxy on it, before the next change.
      version = admin_->State().snapshot_version();
      WaitInSync(version);
    }
    return series;
  }

  // A row with the p50 and the `q` quantile of `s`, judged against the figure's target.
  static std::string QuantileRow(const std::string& figure, const Series& s, double q,
                          const std::string& target_label, double target) {
    const double high = Percentile(s.total_ms, q);
    return Row(figure, Ms(Percentile(s.total_ms, 0.5)) + " / " + Ms(high),
               target_label + TargetText(target), high < target ? "yes" : "no");
  }

  // Where the time went, on stderr: the admin call alone, and the first proxy against the last.
  static void Describe(const std::string& what, const Series& s) {
    std::string line = what + ": all seen p50 " + Ms(Percentile(s.total_ms, 0.5)) + ", p99 " +
                       Ms(Percentile(s.total_ms, 0.99)) + ", max " +
                       Ms(Percentile(s.total_ms, 1.0)) + "; admin call p50 " +
                       Ms(Percentile(s.call_ms, 0.5)) + ", p99 " + Ms(Percentile(s.call_ms, 0.99));
    if (!s.first_ms.empty()) {
      line += "; first proxy p50 " + Ms(Percentile(s.first_ms, 0.5)) + ", p99 " +
              Ms(Percentile(s.first_ms, 0.99));
    }
    Progress(line);
  }

  Series FleetPropagation(int total) {
    Series series;
    for (int i = 0; i < flags_.fleet_iterations; ++i) {
      const bool disable = i % 2 == 0;
      const int expect = disable ? total - 1 : total;
      corral::v1::NodeNameRequest req;
      req.set_name("fleet-0000");
      corral::v1::NodeInfo info;
      const auto start = Clock::now();
      admin_->Must(admin_->Call(disable ? &corral::v1::Admin::Stub::DisableNode
                                        : &corral::v1::Admin::Stub::EnableNode,
                                req, &info),
                   disable ? "DisableNode" : "EnableNode");
      const auto called = Clock::now();
      const auto seen = poller_->AllSeen(
          "/api/proxy",
          [expect](const nlohmann::json& h) { return h.value("available_nodes", -1) == expect; },
          std::chrono::seconds(30));
      if (!seen) Fail("a change to the large fleet did not reach every proxy within 30 s");
      series.total_ms.push_back(Millis(seen->last - start).count());
      series.first_ms.push_back(Millis(seen->first - start).count());
      series.call_ms.push_back(Millis(called - start).count());
      WaitInSync(admin_->State().snapshot_version());
    }
    return series;
  }

  const Flags flags_;
  std::vector<std::unique_ptr<Child>> sims_;
  std::vector<int> sim_ports_;
  std::unique_ptr<Child> control_;
  std::vector<std::unique_ptr<Child>> proxies_;
  std::unique_ptr<Admin> admin_;
  std::unique_ptr<ProxyPoller> poller_;
  int weight_ = 1;
};

constexpr const char* kUsage = R"(usage: corral-control-bench --bin-dir DIR [flags]
  --bin-dir DIR           where corral-control, corral-proxy and corral-sim are
  --work-dir DIR          logs, data dir, snapshot copies (default: a temp dir, removed after)
  --proxies N             corral-proxy processes (default 10)
  --iterations N          changes per series of figure 1 (default 200)
  --nodes N               nodes registered for figure 1 (default 8)
  --fleet-nodes N         nodes registered for figure 2 (default 1000)
  --fleet-iterations N    changes measured with the large fleet (default 20)
  --sims N                corral-sim processes the nodes point at (default 2)
)";

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::cerr << "control-bench: " << flag << " needs a value\n" << kUsage;
      std::exit(2);
    }
    const std::string value = argv[++i];
    auto number = [&](int* out) {
      *out = std::atoi(value.c_str());
      if (*out <= 0) {
        std::cerr << "control-bench: " << flag << " must be a positive number\n";
        std::exit(2);
      }
    };
    if (flag == "--bin-dir") {
      f.bin_dir = value;
    } else if (flag == "--work-dir") {
      f.work_dir = value;
    } else if (flag == "--proxies") {
      number(&f.proxies);
    } else if (flag == "--iterations") {
      number(&f.iterations);
    } else if (flag == "--nodes") {
      number(&f.small_nodes);
    } else if (flag == "--fleet-nodes") {
      number(&f.fleet_nodes);
    } else if (flag == "--fleet-iterations") {
      number(&f.fleet_iterations);
    } else if (flag == "--sims") {
      number(&f.sims);
    } else {
      std::cerr << "control-bench: unknown flag " << flag << "\n" << kUsage;
      std::exit(2);
    }
  }
  if (f.bin_dir.empty()) {
    std::cerr << kUsage;
    std::exit(2);
  }
  if (f.proxies + f.sims + 1 > static_cast<int>(kMaxChildren)) {
    std::cerr << "control-bench: at most " << kMaxChildren - 1 << " child processes\n";
    std::exit(2);
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags = ParseFlags(argc, argv);
  struct sigaction sa = {};
  sa.sa_handler = KillChildrenAndExit;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  bool remove_work = false;
  if (flags.work_dir.empty()) {
    char tmpl[] = "/tmp/corral-control-bench.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) Fail("mkdtemp: " + std::string(strerror(errno)));
    flags.work_dir = tmpl;
    remove_work = true;
  }
  const std::string work_dir = flags.work_dir;
  std::vector<std::string> rows;
  {
    Bench bench(std::move(flags));
    rows = bench.Run();
  }
  for (const std::string& row : rows) std::cout << row << "\n";
  if (remove_work) std::filesystem::remove_all(work_dir);
  return 0;
}
