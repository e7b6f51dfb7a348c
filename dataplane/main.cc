// corral-proxy: parses flags and wires the data plane together. All logic lives in the units
// it wires (ProxyServer, SnapshotStore, Router, UpstreamPool); see docs/proxy.md.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/access_log.h"
#include "common/http_listener.h"
#include "common/log.h"
#include "dataplane/control_client.h"
#include "dataplane/front_door.h"
#include "dataplane/proxy_metrics.h"
#include "dataplane/proxy_server.h"
#include "dataplane/record_sinks.h"
#include "dataplane/replies.h"
#include "dataplane/route.h"
#include "dataplane/router.h"
#include "dataplane/slot_grants.h"
#include "dataplane/snapshot_store.h"
#include "dataplane/upstream_pool.h"
#include "dataplane/worker_pool.h"

namespace {

constexpr const char* kUsage =
    "usage: corral-proxy --listen HOST:PORT [--snapshot FILE] [--control ADDR]\n"
    "                    [--control-token-file FILE | --control-token T] [--id NAME]\n"
    "                    [--control-tls-ca F [--control-tls-cert F --control-tls-key F]]\n"
    "                    [--port-file PATH]\n"
    "                    [--max-streams N] [--threads N] [--max-body-mb N]\n"
    "                    [--body-budget-mb N] [--body-timeout-s N] [--max-client-connections N]\n"
    "                    [--allow-origins LIST] [--grace-s N] [--log-level LEVEL]\n"
    "                    [--access-log FILE]\n"
    "\n"
    "  --listen HOST:PORT   address to serve the Ollama API on (default 0.0.0.0:11434)\n"
    "  --snapshot FILE      routing snapshot (protobuf JSON, docs/snapshot.md); reloaded on\n"
    "                       SIGHUP; also where snapshots from the control plane are kept\n"
    "  --control ADDR       corral-control's gRPC address: snapshots are watched from it and\n"
    "                       kept in --snapshot FILE, which serves while it is unreachable\n"
    "  --control-token-file FILE  the control plane's proxy.token (or CORRAL_PROXY_TOKEN)\n"
    "  --control-token T    the proxy token itself\n"
    "  --control-tls-ca F   PEM CA of the control plane's certificate: Watch and Report use TLS\n"
    "                       (default plaintext, for a control plane on loopback)\n"
    "  --control-tls-cert F PEM client certificate, for a control plane that requires one (mTLS)\n"
    "  --control-tls-key F  PEM private key of --control-tls-cert\n"
    "  --id NAME            how this proxy names itself (default: corral-proxy)\n"
    "  --port-file PATH     write the bound port here once listening\n"
    "  --max-streams N      concurrent proxied requests before answering 503 (default 2048)\n"
    "  --threads N          HTTP worker threads (default max-streams + 256)\n"
    "  --max-body-mb N      largest request body buffered, in MiB (default 256)\n"
    "  --body-budget-mb N   request bodies buffered at once across all connections, in MiB\n"
    "                       (default: a quarter of the memory the process may use, at most 4096)\n"
    "  --body-timeout-s N   longest a request body may take to arrive (default 600)\n"
    "  --max-client-connections N  open connections one client address may hold\n"
    "                       (default: half of --max-streams, at least 64; 0 = no cap)\n"
    "  --allow-origins LIST comma-separated browser origins allowed; '*' allows any\n"
    "                       (default: Ollama's own: localhost, 127.0.0.1, 0.0.0.0, app://...)\n"
    "  --grace-s N          on SIGTERM, how long open streams may run on (default 30)\n"
    "  --log-level LEVEL    debug, info, warn or error (default info)\n"
    "  --access-log FILE    one JSON line per finished request ('-' = stdout; default off);\n"
    "                       reopened on SIGHUP, for logrotate\n";

struct Flags {
  std::string listen = "0.0.0.0:11434";
  std::string snapshot;
  std::string control;
  std::string control_token;
  std::string control_token_file;
  std::string control_tls_ca;
  std::string control_tls_cert;
  std::string control_tls_key;
  std::string id = "corral-proxy";
  std::string port_file;
  int64_t max_streams = 2048;
  int64_t threads = 0;
  int64_t max_body_mb = 256;
  int64_t body_budget_mb = 0;  // 0: from the memory available (DefaultBodyBudget)
  int64_t body_timeout_s = 600;
  int64_t max_client_connections = -1;  // -1: half of max_streams, at least 64
  int64_t grace_s = 30;
  std::string allow_origins;
  std::string log_level = "info";
  std::string access_log;
};

bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "corral-proxy: %s needs a value\n%s", arg.c_str(), kUsage);
      return false;
    }
    const std::string value = argv[++i];
    auto number = [&](int64_t* out, int64_t min) {
      if (!absl::SimpleAtoi(value, out) || *out < min) {
        std::fprintf(stderr, "corral-proxy: %s wants a number >= %lld, not \"%s\"\n", arg.c_str(),
                     static_cast<long long>(min), value.c_str());
        return false;
      }
      return true;
    };
    if (arg == "--listen") {
      flags->listen = value;
    } else if (arg == "--snapshot") {
      flags->snapshot = value;
    } else if (arg == "--control") {
      flags->control = value;
    } else if (arg == "--control-token") {
      flags->control_token = value;
    } else if (arg == "--control-token-file") {
      flags->control_token_file = value;
    } else if (arg == "--control-tls-ca") {
      flags->control_tls_ca = value;
    } else if (arg == "--control-tls-cert") {
      flags->control_tls_cert = value;
    } else if (arg == "--control-tls-key") {
      flags->control_tls_key = value;
    } else if (arg == "--id") {
      flags->id = value;
    } else if (arg == "--port-file") {
      flags->port_file = value;
    } else if (arg == "--max-streams") {
      if (!number(&flags->max_streams, 1)) return false;
    } else if (arg == "--threads") {
      if (!number(&flags->threads, 1)) return false;
    } else if (arg == "--max-body-mb") {
      if (!number(&flags->max_body_mb, 1)) return false;
    } else if (arg == "--body-budget-mb") {
      if (!number(&flags->body_budget_mb, 1)) return false;
    } else if (arg == "--body-timeout-s") {
      if (!number(&flags->body_timeout_s, 1)) return false;
    } else if (arg == "--max-client-connections") {
      if (!number(&flags->max_client_connections, 0)) return false;
    } else if (arg == "--grace-s") {
      if (!number(&flags->grace_s, 0)) return false;
    } else if (arg == "--allow-origins") {
      flags->allow_origins = value;
    } else if (arg == "--log-level") {
      flags->log_level = value;
    } else if (arg == "--access-log") {
      flags->access_log = value;
    } else {
      std::fprintf(stderr, "corral-proxy: unknown flag %s\n%s", arg.c_str(), kUsage);
      return false;
    }
  }
  return true;
}

// A graceful stop needs the listener to stop accepting while open streams keep running.
// httplib's stop() marks the server as shutting down, and from then on its response writer no
// longer calls content providers, which would cut every open stream. Shutting the listening
// socket down instead ends the accept loop only: listen() then waits for the workers, whose
// streams run to their end.
class ProxyListener : public corral::HttpListener {
 public:
  // Workers start on demand (an idle proxy holds few threads), up to `threads`.
  ProxyListener(size_t threads, int backlog) : HttpListener(threads, backlog) {
    new_task_queue = [threads] { return new corral::dataplane::WorkerPool(threads); };
    set_busy_poll(true);
    // A head the listener refuses gets its error in the route's format, as any proxy error.
    set_refusal_writer([](int status, std::string_view target, std::string_view message) {
      using namespace corral::dataplane;
      return Refusal{kJsonContentType,
                     ErrorBody(status, message, IsOpenAIPath(target.substr(0, target.find('?'))))};
    });
  }
  void StopAccepting() { ::shutdown(svr_sock_, SHUT_RDWR); }
};

// A quarter of the memory this process may use (the machine's, or its cgroup's limit when
// lower), at most 4 GiB and at least 64 MiB: request bodies are held whole to read their
// model, so their total is what a flood of large bodies could take.
uint64_t DefaultBodyBudget() {
  uint64_t memory = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                    static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
  std::ifstream cgroup("/sys/fs/cgroup/memory.max");
  uint64_t limit = 0;
  if (cgroup >> limit && limit > 0 && limit < memory) memory = limit;
  return std::clamp<uint64_t>(memory / 4, uint64_t{64} << 20, uint64_t{4} << 30);
}

// Says at WARN every time the snapshot turns the proxy open (no inference token asked for, like
// Ollama itself) or closed: an operator must never find out from a client.
class OpenModeLog {
 public:
  void Note(const corral::v1::Snapshot& snapshot) {
    const int closed = corral::dataplane::FleetClosed(snapshot) ? 1 : 0;
    if (closed_.exchange(closed) == closed) return;
    if (closed) {
      CORRAL_LOG(kWarn, "proxy") << "snapshot " << snapshot.version()
                                 << " closes the proxy: every route but / and /api/proxy needs an "
                                    "inference token";
    } else {
      CORRAL_LOG(kWarn, "proxy") << "snapshot " << snapshot.version()
                                 << " opens the proxy: no inference token is asked for, any "
                                    "client that reaches it may use every node";
    }
  }

 private:
  std::atomic<int> closed_{-1};  // -1 until the first snapshot
};

// The proxy token from the flag, the file, or CORRAL_PROXY_TOKEN, in that order.
bool ResolveControlToken(Flags* flags) {
  if (!flags->control_token.empty()) return true;
  if (!flags->control_token_file.empty()) {
    std::ifstream in(flags->control_token_file);
    if (!(in >> flags->control_token)) {
      std::fprintf(stderr, "corral-proxy: cannot read the proxy token from %s\n",
                   flags->control_token_file.c_str());
      return false;
    }
    return true;
  }
  if (const char* env = std::getenv("CORRAL_PROXY_TOKEN")) flags->control_token = env;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace corral;
  using namespace corral::dataplane;
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) return 2;
  LogLevel level;
  if (!ParseLogLevel(flags.log_level, &level)) {
    std::fprintf(stderr, "corral-proxy: --log-level must be debug, info, warn or error\n");
    return 2;
  }
  SetLogLevel(level);
  if (!flags.control.empty() && !ResolveControlToken(&flags)) return 2;
  auto address = ParseListenAddress(flags.listen);
  if (!address.ok()) {
    std::fprintf(stderr, "corral-proxy: %s\n", std::string(address.status().message()).c_str());
    return 2;
  }

  // Signals go to one thread that sigwait()s; every other thread inherits the block.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGUSR1);  // wakes the signal thread when the process ends on its own
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  SnapshotStore store(flags.snapshot);
  if (!flags.snapshot.empty()) {
    const auto loaded = store.LoadFile(flags.snapshot);
    if (absl::IsNotFound(loaded) && !flags.control.empty()) {
      CORRAL_LOG(kInfo, "proxy") << "no on-disk snapshot at " << flags.snapshot
                                 << " yet: answering 503 until the control plane sends one";
    } else if (absl::IsDataLoss(loaded) && !flags.control.empty()) {
      // A copy torn by a crash mid-write is no reason to stay down: the control plane has the
      // truth, and the next snapshot it sends replaces the file.
      CORRAL_LOG(kWarn, "proxy") << "the on-disk snapshot is unusable (" << loaded.message()
                                 << "): answering 503 until the control plane sends one";
    } else if (absl::IsNotFound(loaded)) {
      CORRAL_LOG(kWarn, "proxy") << "no snapshot at " << flags.snapshot
                                 << " yet: answering 503 until one arrives (SIGHUP reloads it)";
    } else if (!loaded.ok()) {
      std::fprintf(stderr, "corral-proxy: %s\n", std::string(loaded.message()).c_str());
      return 1;
    }
  } else if (flags.control.empty()) {
    CORRAL_LOG(kWarn, "proxy") << "no --snapshot given: answering 503 until one arrives";
  }

  Router router;
  // This proxy's share of every node's limits, from the control plane's Report answers; whole
  // limits until the first answer (and always, without a control plane).
  SlotGrants grants;
  router.UseSlotGrants(&grants);
  // Every proxied request holds at most one upstream connection, so the proxy's concurrency
  // limit bounds what can come back idle; beyond that the pool follows the recent load.
  UpstreamPool pool(static_cast<size_t>(flags.max_streams));
  FrontDoorOptions door_options;
  door_options.max_streams = flags.max_streams;
  door_options.max_body_bytes = static_cast<uint64_t>(flags.max_body_mb) << 20;
  for (auto& origin : absl::StrSplit(flags.allow_origins, ',', absl::SkipWhitespace())) {
    door_options.allow_origins.emplace_back(origin);
  }
  BodyBudget budget(flags.body_budget_mb > 0 ? static_cast<uint64_t>(flags.body_budget_mb) << 20
                                             : DefaultBodyBudget());
  FrontDoor front_door(door_options, store, budget);
  ProxyOptions options;
  options.proxy_id = flags.id;
  ProxyServer proxy(options, front_door, store, router, pool);

  // Every finished request's record goes to these sinks (dataplane/record_sinks.h).
  ProxyMetrics metrics;
  router.queue().UseMetrics(&metrics);
  ControlClient* control_client = nullptr;  // set below, before the listener runs
  MetricsSink metrics_sink(metrics, router, store, [&control_client] {
    return control_client && control_client->connected();
  });
  std::vector<RecordSink*> sinks = {&metrics_sink};
  // Requests and tokens per (token, model, node, hour), drained into Reports to the control
  // plane, which keeps them (corralctl usage). Declared before the client so it outlives it;
  // counted only when there is a control plane to report to.
  UsageLedger usage;
  UsageSink usage_sink(usage);
  if (!flags.control.empty()) sinks.push_back(&usage_sink);
  std::unique_ptr<AccessLog> access_log;
  std::unique_ptr<AccessLogSink> access_log_sink;
  if (!flags.access_log.empty()) {
    auto opened = AccessLog::Open(flags.access_log);
    if (!opened.ok()) {
      std::fprintf(stderr, "corral-proxy: %s\n", std::string(opened.status().message()).c_str());
      return 1;
    }
    access_log = *std::move(opened);
    access_log_sink = std::make_unique<AccessLogSink>(*access_log);
    sinks.push_back(access_log_sink.get());
  }
  front_door.set_record_sinks(&sinks);
  proxy.set_metrics(&metrics.registry);
  if (auto current = store.Current()) metrics_sink.OnSnapshot(*current);

  const int64_t threads = flags.threads > 0 ? flags.threads : flags.max_streams + 256;
  ProxyListener listener(static_cast<size_t>(threads), 4096);
  const int64_t per_client = flags.max_client_connections >= 0
                                 ? flags.max_client_connections
                                 // A connection is not a stream (a client keeps idle ones
                                 // open): a small --max-streams must not leave a client one.
                                 : std::max<int64_t>(64, flags.max_streams / 2);
  listener.set_max_connections_per_client(static_cast<size_t>(per_client));
  listener.set_body_timeout(std::chrono::seconds(flags.body_timeout_s));
  proxy.Install(listener);
  auto port = listener.Bind(*address);
  if (!port.ok()) {
    std::fprintf(stderr, "corral-proxy: %s\n", std::string(port.status().message()).c_str());
    return 1;
  }
  if (auto written = WritePortFile(flags.port_file, *port); !written.ok()) {
    std::fprintf(stderr, "corral-proxy: %s\n", std::string(written.message()).c_str());
    return 1;
  }
  auto table = store.Current();
  CORRAL_LOG(kInfo, "proxy") << flags.id << " listening on " << address->host << ":" << *port
                             << ", " << threads << " workers, max " << flags.max_streams
                             << " streams (" << per_client << " per client address), "
                             << (budget.limit() >> 20)
                             << " MiB for request bodies, snapshot version " << store.version();
  OpenModeLog open_mode;
  if (table != nullptr) open_mode.Note(table->snapshot());

  // With a control plane, snapshots arrive over Watch; the file stays the on-disk copy that
  // serves while the control plane is away, and is what a restart starts from.
  std::unique_ptr<ControlClient> control;
  if (!flags.control.empty()) {
    ControlClientOptions control_options;
    control_options.usage = &usage;
    control_options.grants = &grants;
    control_options.on_grants = [&router] { router.queue().WakeAll(); };
    control_options.waiting = [&router] { return router.queue().depth(); };
    control_options.address = flags.control;
    control_options.proxy_id = flags.id;
    control_options.token = flags.control_token;
    control_options.tls_ca_file = flags.control_tls_ca;
    control_options.tls_cert_file = flags.control_tls_cert;
    control_options.tls_key_file = flags.control_tls_key;
    const std::string source = "control:" + flags.control;
    control = std::make_unique<ControlClient>(
        control_options,
        [&store, &router, &open_mode, &metrics_sink, source](const corral::v1::Snapshot& snapshot) {
          absl::Status applied = store.Apply(snapshot, source);
          // Runtime state of nodes the fleet no longer has would otherwise pile up.
          if (applied.ok()) {
            router.ForgetNodesNotIn(*store.Current());
            open_mode.Note(snapshot);
            metrics_sink.OnSnapshot(*store.Current());
          }
          return applied;
        },
        [&proxy] { return proxy.NodeLoads(); });
    if (!control->init_status().ok()) {
      std::fprintf(stderr, "corral-proxy: %s\n",
                   std::string(control->init_status().message()).c_str());
      return 2;
    }
    control_client = control.get();
    control->Start(store.version());
    CORRAL_LOG(kInfo, "proxy") << "watching snapshots from the control plane at " << flags.control;
  }

  std::mutex mu;
  std::condition_variable cv;
  bool stopped = false;
  std::atomic<bool> stopping{false};
  std::thread signal_thread([&] {
    while (true) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (sig == SIGHUP) {
        if (access_log) {
          if (auto reopened = access_log->Reopen(); !reopened.ok()) {
            CORRAL_LOG(kWarn, "proxy") << "SIGHUP: access log not reopened: " << reopened.message();
          }
        }
        if (flags.snapshot.empty()) continue;
        const auto reloaded = store.LoadFile(flags.snapshot);
        if (!reloaded.ok()) {
          CORRAL_LOG(kWarn, "proxy") << "SIGHUP: snapshot not reloaded: " << reloaded.message();
        } else if (auto current = store.Current()) {
          open_mode.Note(current->snapshot());
          metrics_sink.OnSnapshot(*current);
        }
        continue;
      }
      if (sig == SIGUSR1) return;  // the process is ending on its own
      CORRAL_LOG(kInfo, "proxy") << "stopping: no new connections, open streams get "
                                 << flags.grace_s << " s to finish";
      stopping = true;
      listener.StopAccepting();
      std::unique_lock<std::mutex> lock(mu);
      if (!cv.wait_for(lock, std::chrono::seconds(flags.grace_s), [&] { return stopped; })) {
        CORRAL_LOG(kWarn, "proxy")
            << "grace period over: ending " << proxy.active_requests() << " open requests";
        proxy.AbortAll();
      }
      return;
    }
  });
  const bool ok = listener.Run();
  {
    std::lock_guard<std::mutex> lock(mu);
    stopped = true;
  }
  cv.notify_all();
  pthread_kill(signal_thread.native_handle(), SIGUSR1);
  signal_thread.join();
  if (control) control->Stop();
  CORRAL_LOG(kInfo, "proxy") << "stopped";
  // The accept loop reports a failure when its socket is shut down: that is the stop asked for.
  return ok || stopping.load() ? 0 : 1;
}
