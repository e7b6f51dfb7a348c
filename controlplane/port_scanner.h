// PortScanner: port-range discovery. The operator names ranges of host:[port_from, port_to]
// (Registry::SetDiscovery); on every pass the scanner knocks on each port of each range that is
// not already a registered node, and a port that answers like Ollama — GET / says exactly
// "Ollama is running" and GET /api/version returns a version — joins the fleet as a node named
// "<host>-<port>" with discovered=true. The prober is asked to probe it at once.
//
// Discovered nodes are never removed by the scanner: a node that stops answering moves to the
// standby pool through the prober, like any other node, and an operator removes it. A port that
// answers something else (another service, a half-started node) is simply left alone and tried
// again on the next pass.
//
// Each pass re-reads the ranges and the interval from the registry, so a SetDiscovery takes
// effect on the next pass (or at once after Wake). Knocks run on at most `workers` threads, with
// short timeouts, so a wide range of closed ports is cheap and a black-holed host is bounded.
//
// Thread safety: all public methods are safe from any thread; ScanOnce calls do not overlap
// (a second caller waits for the first).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/registry.h"

namespace corral::control {

class Prober;

struct PortScannerOptions {
  std::chrono::milliseconds connect_timeout{300};  // a closed port refuses at once
  std::chrono::milliseconds answer_timeout{1000};  // GET / and GET /api/version
  size_t workers = 32;                             // concurrent knocks per pass
  // Pass interval when the discovery config leaves it at 0.
  std::chrono::milliseconds default_interval{30000};
};

// The name a node discovered at host:port gets: "<host>-<port>", with every character outside
// [A-Za-z0-9_.-] replaced by '-' (IPv6 colons) and cut to the 64 characters a name may have.
std::string DiscoveredNodeName(const std::string& host, int port);

class PortScanner {
 public:
  // `prober` may be null (no immediate probe of a new node; it is probed on the next refresh).
  // Both must outlive the scanner.
  PortScanner(Registry* registry, Prober* prober, PortScannerOptions options = {});
  ~PortScanner();
  PortScanner(const PortScanner&) = delete;
  PortScanner& operator=(const PortScanner&) = delete;

  // Starts the background pass loop: a pass at once, then one per interval.
  void Start();
  void Stop();
  // Runs the next pass now (after the discovery config changed).
  void Wake();

  // One pass over every configured range; returns the names of the nodes that joined.
  absl::StatusOr<std::vector<std::string>> ScanOnce();

 private:
  void Loop();

  Registry* const registry_;
  Prober* const prober_;
  const PortScannerOptions options_;

  std::mutex scan_mu_;  // serializes passes

  std::mutex mu_;
  std::condition_variable cv_;
  bool wake_ = false;      // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::thread loop_;
};

}  // namespace corral::control
