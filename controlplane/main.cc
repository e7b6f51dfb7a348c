// corral-control: flags, then RunControlServer (controlplane/control_server.h).
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/log.h"
#include "controlplane/control_server.h"

namespace {

constexpr char kUsage[] =
    "usage: corral-control [--listen HOST:PORT] [--data-dir DIR] [--port-file PATH]\n"
    "                      [--probe-interval-ms N] [--no-probe] [--no-discovery]\n"
    "                      [--shutdown-grace-ms N] [--reuse-port] [--log-level L]\n"
    "                      [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]\n"
    "                      [--metrics-listen HOST:PORT [--metrics-port-file PATH]]\n"
    "                      [--http-listen HOST:PORT|off [--http-port-file PATH]]\n"
    "\n"
    "  --listen             gRPC address (default 127.0.0.1:11400; port 0 = any free port)\n"
    "  --tls-cert           PEM certificate chain of the gRPC port (TLS; default plaintext, for\n"
    "                       loopback only: tokens cross the network in clear otherwise)\n"
    "  --tls-key            PEM private key of --tls-cert (unencrypted; keep it mode 0600)\n"
    "  --tls-client-ca      PEM CA bundle: clients (proxies, corralctl) must present a\n"
    "                       certificate it signed (mTLS)\n"
    "  --data-dir           registry (corral.db), admin.token, proxy.token (default ./var)\n"
    "  --port-file          write the bound port here once listening\n"
    "  --metrics-listen     serve Prometheus GET /metrics on this address (default off; e.g.\n"
    "                       127.0.0.1:11402, or 0.0.0.0:11402 for a scraper on the network)\n"
    "  --metrics-port-file  write the bound metrics port here once listening\n"
    "  --http-listen        HTTP admin API (/v1), /openapi.json and /docs (default\n"
    "                       127.0.0.1:11401, skipped with a warning when that port is busy;\n"
    "                       off = none). Same admin token as gRPC; plaintext: keep it on\n"
    "                       loopback or behind a TLS-terminating proxy\n"
    "  --http-port-file     write the bound HTTP port here once listening\n"
    "  --probe-interval-ms  time between two probes of a node (default 5000)\n"
    "  --no-probe           do not probe nodes (their health stays as last recorded)\n"
    "  --no-discovery       do not run port-range discovery\n"
    "  --shutdown-grace-ms  how long in-flight calls may take at shutdown (default 5000)\n"
    "  --reuse-port         allow a second process on the same port (SO_REUSEPORT)\n"
    "  --log-level          debug, info, warn or error (default info)\n";

bool ParseInt(const char* text, long min, long max, long* out) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < min || v > max) return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  corral::control::ControlServerOptions options;
  options.http_listen = corral::control::kDefaultHttpListen;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "corral-control: %s needs a value\n%s", flag.c_str(), kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    long n = 0;
    if (flag == "--listen") {
      options.listen = value();
    } else if (flag == "--tls-cert") {
      options.tls.cert_file = value();
    } else if (flag == "--tls-key") {
      options.tls.key_file = value();
    } else if (flag == "--tls-client-ca") {
      options.tls.client_ca_file = value();
    } else if (flag == "--data-dir") {
      options.data_dir = value();
    } else if (flag == "--port-file") {
      options.port_file = value();
    } else if (flag == "--metrics-listen") {
      options.metrics_listen = value();
    } else if (flag == "--metrics-port-file") {
      options.metrics_port_file = value();
    } else if (flag == "--http-listen") {
      options.http_listen = value();
      options.http_required = true;
    } else if (flag == "--http-port-file") {
      options.http_port_file = value();
    } else if (flag == "--probe-interval-ms") {
      if (!ParseInt(value(), 100, 3600000, &n)) {
        std::fprintf(stderr, "corral-control: --probe-interval-ms must be 100..3600000\n");
        return 2;
      }
      options.prober.interval = std::chrono::milliseconds(n);
    } else if (flag == "--shutdown-grace-ms") {
      if (!ParseInt(value(), 0, 600000, &n)) {
        std::fprintf(stderr, "corral-control: --shutdown-grace-ms must be 0..600000\n");
        return 2;
      }
      options.shutdown_grace = std::chrono::milliseconds(n);
    } else if (flag == "--no-probe") {
      options.enable_prober = false;
    } else if (flag == "--no-discovery") {
      options.enable_scanner = false;
    } else if (flag == "--reuse-port") {
      options.reuse_port = true;
    } else if (flag == "--log-level") {
      corral::LogLevel level;
      const char* text = value();
      if (!corral::ParseLogLevel(text, &level)) {
        std::fprintf(stderr, "corral-control: --log-level must be debug, info, warn or error\n");
        return 2;
      }
      corral::SetLogLevel(level);
    } else if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "corral-control: unknown flag %s\n%s", flag.c_str(), kUsage);
      return 2;
    }
  }
  return corral::control::RunControlServer(std::move(options));
}
