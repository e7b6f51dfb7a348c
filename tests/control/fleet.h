// Fleet: a whole Corral deployment as real child processes on loopback, for end-to-end tests —
// one corral-control (its own data dir), N corral-proxy processes watching it (each with its own
// snapshot cache file), M corral-sim nodes, and corralctl run as a child per command.
//
// Every process binds port 0 and reports its port through --port-file; restarts reuse the port a
// process had (the control plane and the sims), as an operator's restart would. Helpers return
// ::testing::AssertionResult so a test can ASSERT on them and read why they failed; a failing
// test gets every process's log printed (DumpLogs, called from the destructor when the test has
// failed).
//
// Thread safety: a Fleet belongs to one test thread. The HTTP helpers (Generate, SimStats,
// ProxyState) open their own connections and may be called from helper threads.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace corral::testing {

// What one corralctl run left behind.
struct CtlResult {
  int exit_code = -1;
  std::string out;
  std::string err;
  // stdout parsed as one JSON document (null when it is not JSON).
  nlohmann::json Json() const;
  // stdout parsed as one JSON document per line (pull --json).
  std::vector<nlohmann::json> JsonLines() const;
};
std::ostream& operator<<(std::ostream& os, const CtlResult& r);

// An HTTP answer as a client saw it.
struct HttpAnswer {
  int status = 0;  // 0 when the request failed outright
  std::string body;
  std::string error;  // transport error, when status is 0
};

struct FleetOptions {
  // How often the control plane probes each node. Short so health changes show quickly.
  int probe_interval_ms = 200;
  // corral-sim flags for every sim (after --listen and --models): fast answers by default.
  std::vector<std::string> sim_args = {"--load-delay-ms", "0", "--token-interval-ms", "1",
                                       "--tokens",        "3"};
};

class Fleet {
 public:
  explicit Fleet(FleetOptions options = {});
  ~Fleet();
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  // ---- control plane ----
  // Starts corral-control on the port it had before (first start: port 0) with the fleet's data
  // dir, and waits until it writes its port and admin token.
  ::testing::AssertionResult StartControl();
  ::testing::AssertionResult KillControl();  // SIGKILL, reaped
  int control_port() const { return control_port_; }
  std::string control_address() const;
  const std::string& data_dir() const { return data_dir_; }
  std::string admin_token() const;  // the admin.token the control plane wrote

  // ---- proxies ----
  // Starts a proxy named `id` that watches the control plane; returns its index through `index`.
  ::testing::AssertionResult StartProxy(const std::string& id, size_t* index = nullptr);
  ::testing::AssertionResult KillProxy(size_t index);     // SIGKILL, reaped
  ::testing::AssertionResult RestartProxy(size_t index);  // same id and snapshot cache, new port
  int proxy_port(size_t index) const;
  const std::string& proxy_id(size_t index) const { return proxies_[index].id; }
  size_t proxy_count() const { return proxies_.size(); }

  // ---- sims ----
  // Starts a corral-sim with `models` (comma-separated) plus the fleet's sim_args and `extra`.
  ::testing::AssertionResult StartSim(const std::string& models, size_t* index = nullptr,
                                      std::vector<std::string> extra = {});
  ::testing::AssertionResult KillSim(size_t index);     // SIGKILL, reaped; the port is kept
  ::testing::AssertionResult RestartSim(size_t index);  // same flags, same port
  int sim_port(size_t index) const { return sims_[index].port; }
  std::string sim_url(size_t index) const;  // http://127.0.0.1:PORT

  // ---- corralctl ----
  // Runs corralctl with --control and --token of this fleet prepended; later args win.
  CtlResult Ctl(const std::vector<std::string>& args) const;
  // Runs corralctl with exactly `args` and the extra environment `env` (NAME -> value).
  CtlResult CtlRaw(const std::vector<std::string>& args,
                   const std::map<std::string, std::string>& env = {}) const;
  // `corralctl --json state`, parsed; null on failure.
  nlohmann::json State() const;
  // The control plane's snapshot version (`state --json`); 0 when it cannot be read.
  uint64_t SnapshotVersion() const;
  // The health of node `name` in `state --json` ("HEALTH_HEALTHY", ...); empty if absent.
  std::string NodeHealth(const std::string& name) const;

  // ---- the proxies' view ----
  // GET /api/proxy/state of proxy `index`, parsed; null when it does not answer.
  nlohmann::json ProxyState(size_t index) const;
  // The snapshot version the proxy serves, from its state endpoint; 0 when unknown.
  uint64_t ProxyAppliedVersion(size_t index) const;
  // Whether the proxy's current routing table lists node `name`.
  bool ProxyHasNode(size_t index, const std::string& name) const;
  // Waits until every proxy serves the control plane's current snapshot version.
  ::testing::AssertionResult WaitProxiesInSync(
      std::chrono::milliseconds timeout = std::chrono::seconds(20)) const;

  // ---- HTTP ----
  // POST /api/generate on proxy `index` for `model`, non-streaming.
  HttpAnswer Generate(size_t index, const std::string& model) const;
  // GET /_sim/stats of sim `index`, parsed; null when it does not answer.
  nlohmann::json SimStats(size_t index) const;
  // How many requests sim `index` has seen on `path` (0 when it does not answer).
  int64_t SimRequests(size_t index, const std::string& path = "/api/generate") const;
  // POST a JSON body to a sim's path (/_sim/config, /_sim/release).
  HttpAnswer SimPost(size_t index, const std::string& path, const nlohmann::json& body) const;

  // Prints every process's log; the destructor calls it when the current test has failed.
  void DumpLogs() const;

 private:
  struct Proc {
    std::string id;  // proxies: --id
    std::vector<std::string> args;
    std::unique_ptr<ChildProcess> process;
    int port = 0;
  };
  ::testing::AssertionResult Launch(const std::string& binary, Proc* proc, const char* what);

  FleetOptions options_;
  std::string dir_;       // logs, caches, corralctl output
  std::string data_dir_;  // corral-control's --data-dir
  int control_port_ = 0;
  std::unique_ptr<ChildProcess> control_;
  std::vector<Proc> proxies_;
  std::vector<Proc> sims_;
  // Processes that were replaced by a restart, kept for their logs.
  std::vector<std::unique_ptr<ChildProcess>> retired_;
};

}  // namespace corral::testing
