// corral-sim: a simulated Ollama node. Parses flags, binds, serves until SIGTERM/SIGINT.
// Behaviour lives in sim_server.cc; docs/sim.md describes every flag.
#include <signal.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "common/http_listener.h"
#include "common/log.h"
#include "sim/model_catalog.h"
#include "sim/sim_server.h"

namespace {

constexpr char kUsage[] = R"(usage: corral-sim [flags]

  --listen HOST:PORT        address to serve on (default 127.0.0.1:11435; port 0 = any)
  --port-file PATH          write the bound port here once listening
  --models LIST             installed models, "name[=size_bytes],..."
                            (default llama3.2:latest,qwen3:8b,all-minilm:latest)
  --version X.Y.Z           version reported by /api/version (default 0.12.3)
  --tokens N                content tokens per answer (default 8)
  --token-interval-ms MS    time between tokens (default 20)
  --jitter-ms MS            +/- random jitter on each interval (default 0)
  --load-delay-ms MS        cold-load delay before headers (default 500)
  --load-ms-per-gb MS       added to each cold load per GiB of the model's size (default 0)
  --num-parallel N          parallel generations per loaded model (default 1)
  --max-queue N             waiting requests before 503; 0 = no limit (default 512)
  --vram-gb G               memory budget for loaded models, evicting idle ones least
                            recently used first; 0 = unlimited (default 0)
  --fast                    no delays at all (benchmarks)
  --threads N               HTTP worker threads (default 512)
  --fail MODE               none, error-500, busy-503, hang, die-mid-stream,
                            drop-mid-stream, error-mid-stream, stall-mid-stream,
                            garbage, not-http, slow-headers
  --fail-after K            tokens before a *-mid-stream failure (default 2)
  --fail-times N            inject the failure N times, then behave (default 0 = always)
  --fail-all-routes         failures also hit discovery/management routes
  --slow-headers-ms MS      header delay of --fail slow-headers (default 90000)
  --pull-interval-ms MS     time between pull progress lines (default 60)
  --final-text              put the last token's text in the final chunk
  --log-level LEVEL         debug, info, warn, error (default info)
)";

bool ParseInt(const std::string& text, int* out) {
  return absl::SimpleAtoi(text, out) && *out >= 0;
}

}  // namespace

int main(int argc, char** argv) {
  using corral::sim::SimConfig;
  SimConfig config;
  std::string listen = "127.0.0.1:11435";
  std::string port_file;
  std::string models_list(corral::sim::kDefaultModels);
  int threads = 512;

  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) {
        std::cerr << "corral-sim: " << flag << " needs a value\n";
        std::exit(2);
      }
      *out = argv[++i];
    };
    auto int_value = [&](int* out) {
      std::string text;
      value(&text);
      if (!ParseInt(text, out)) {
        std::cerr << "corral-sim: " << flag << " needs a non-negative integer, got \"" << text
                  << "\"\n";
        std::exit(2);
      }
    };
    std::string text;
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (flag == "--listen") {
      value(&listen);
    } else if (flag == "--port-file") {
      value(&port_file);
    } else if (flag == "--models") {
      value(&models_list);
    } else if (flag == "--version") {
      value(&config.version);
    } else if (flag == "--tokens") {
      int_value(&config.tokens);
    } else if (flag == "--token-interval-ms") {
      int_value(&config.token_interval_ms);
    } else if (flag == "--jitter-ms") {
      int_value(&config.jitter_ms);
    } else if (flag == "--load-delay-ms") {
      int_value(&config.load_delay_ms);
    } else if (flag == "--num-parallel") {
      int_value(&config.num_parallel);
    } else if (flag == "--max-queue") {
      int_value(&config.max_queue);
    } else if (flag == "--vram-gb" || flag == "--load-ms-per-gb") {
      value(&text);
      double* out = flag == "--vram-gb" ? &config.vram_gb : &config.load_ms_per_gb;
      if (!absl::SimpleAtod(text, out) || !std::isfinite(*out) || *out < 0) {
        std::cerr << "corral-sim: " << flag << " needs a non-negative number, got \"" << text
                  << "\"\n";
        return 2;
      }
    } else if (flag == "--fast") {
      config.fast = true;
    } else if (flag == "--threads") {
      int_value(&threads);
    } else if (flag == "--fail") {
      value(&text);
      if (!corral::sim::ParseFailMode(text, &config.fail)) {
        std::cerr << "corral-sim: unknown --fail mode \"" << text << "\"\n" << kUsage;
        return 2;
      }
    } else if (flag == "--fail-after") {
      int_value(&config.fail_after);
    } else if (flag == "--fail-times") {
      int_value(&config.fail_times);
    } else if (flag == "--fail-all-routes") {
      config.fail_all_routes = true;
    } else if (flag == "--slow-headers-ms") {
      int_value(&config.slow_headers_ms);
    } else if (flag == "--pull-interval-ms") {
      int_value(&config.pull_interval_ms);
    } else if (flag == "--final-text") {
      config.final_text = true;
    } else if (flag == "--log-level") {
      value(&text);
      corral::LogLevel level;
      if (!corral::ParseLogLevel(text, &level)) {
        std::cerr << "corral-sim: unknown --log-level \"" << text << "\"\n";
        return 2;
      }
      corral::SetLogLevel(level);
    } else {
      std::cerr << "corral-sim: unknown flag \"" << flag << "\"\n" << kUsage;
      return 2;
    }
  }

  auto address = corral::ParseListenAddress(listen);
  if (!address.ok()) {
    std::cerr << "corral-sim: " << address.status().message() << "\n";
    return 2;
  }
  auto models = corral::sim::ParseModelList(models_list);
  if (!models.ok()) {
    std::cerr << "corral-sim: --models: " << models.status().message() << "\n";
    return 2;
  }

  // Signals are taken by one thread with sigwait; every other thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::vector<std::string> names;
  for (const auto& m : *models) names.push_back(m.name);
  corral::sim::SimServer sim(config, std::move(*models));
  corral::HttpListener listener(static_cast<size_t>(std::max(1, threads)), 1024);
  sim.Register(listener);
  auto port = listener.Bind(*address);
  if (!port.ok()) {
    std::cerr << "corral-sim: " << port.status().message() << "\n";
    return 1;
  }
  if (auto written = corral::WritePortFile(port_file, *port); !written.ok()) {
    std::cerr << "corral-sim: " << written.message() << "\n";
    return 1;
  }
  CORRAL_LOG(kInfo, "corral-sim") << "listening on " << address->host << ":" << *port << " (Ollama "
                                  << config.version << "), models: "
                                  << (names.empty() ? "(none)" : absl::StrJoin(names, ", "));

  std::thread([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    CORRAL_LOG(kInfo, "corral-sim") << "signal " << sig << ": shutting down";
    sim.Shutdown();
    listener.stop();
  }).detach();

  const bool ok = listener.Run();
  sim.Shutdown();
  CORRAL_LOG(kInfo, "corral-sim") << "stopped";
  return ok ? 0 : 1;
}
