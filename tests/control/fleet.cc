#include "tests/control/fleet.h"

#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

extern char** environ;

namespace corral::testing {
namespace {

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  size_t start = s.find_first_not_of(" \n\r\t");
  return start == std::string::npos ? "" : s.substr(start);
}

// A JSON number or a decimal string (protobuf's JSON writes 64-bit integers as strings).
uint64_t AsUint(const nlohmann::json& v) {
  if (v.is_number_unsigned() || v.is_number_integer()) return v.get<uint64_t>();
  if (v.is_string()) {
    try {
      return std::stoull(v.get<std::string>());
    } catch (...) {
      return 0;
    }
  }
  return 0;
}

httplib::Client MakeClient(int port) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(std::chrono::seconds(2));
  cli.set_read_timeout(std::chrono::seconds(30));
  cli.set_write_timeout(std::chrono::seconds(5));
  return cli;
}

HttpAnswer FromResult(const httplib::Result& res) {
  HttpAnswer answer;
  if (!res) {
    answer.error = httplib::to_string(res.error());
    return answer;
  }
  answer.status = res->status;
  answer.body = res->body;
  return answer;
}

}  // namespace

nlohmann::json CtlResult::Json() const {
  return nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
}

std::vector<nlohmann::json> CtlResult::JsonLines() const {
  std::vector<nlohmann::json> lines;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line, nullptr, false));
  }
  return lines;
}

std::ostream& operator<<(std::ostream& os, const CtlResult& r) {
  return os << "exit " << r.exit_code << "\n--- stdout ---\n"
            << r.out << "--- stderr ---\n"
            << r.err;
}

Fleet::Fleet(FleetOptions options) : options_(std::move(options)) {
  dir_ = MakeTempDir("fleet");
  data_dir_ = dir_ + "/control-data";
  std::filesystem::create_directories(data_dir_);
}

Fleet::~Fleet() {
  if (::testing::Test::HasFailure()) DumpLogs();
  // Proxies first, so none of them logs a lost control plane while the fleet goes away.
  for (auto& p : proxies_) p.process.reset();
  control_.reset();
  sims_.clear();
}

::testing::AssertionResult Fleet::Launch(const std::string& binary, Proc* proc, const char* what) {
  if (proc->process) retired_.push_back(std::move(proc->process));
  proc->process = std::make_unique<ChildProcess>(BinaryPath(binary), proc->args, dir_);
  proc->port = proc->process->WaitForPort(std::chrono::seconds(15));
  if (proc->port == 0) {
    proc->process->DumpLog();
    return ::testing::AssertionFailure() << what << " did not start";
  }
  return ::testing::AssertionSuccess();
}

// ---- control plane ----

::testing::AssertionResult Fleet::StartControl() {
  std::vector<std::string> args = {"--listen",
                                   "127.0.0.1:" + std::to_string(control_port_),
                                   "--data-dir",
                                   data_dir_,
                                   "--probe-interval-ms",
                                   std::to_string(options_.probe_interval_ms),
                                   // Not the default port, which a developer's `make run` holds.
                                   "--http-listen",
                                   "off"};
  if (control_) retired_.push_back(std::move(control_));
  control_ = std::make_unique<ChildProcess>(BinaryPath("corral-control"), args, dir_);
  const int port = control_->WaitForPort(std::chrono::seconds(15));
  if (port == 0) {
    control_->DumpLog();
    return ::testing::AssertionFailure() << "corral-control did not start";
  }
  control_port_ = port;
  return WaitFor([&] { return !admin_token().empty(); }, std::chrono::seconds(5),
                 "admin.token in the data dir");
}

::testing::AssertionResult Fleet::KillControl() {
  if (!control_ || control_->Kill() == -1) {
    return ::testing::AssertionFailure() << "corral-control did not die";
  }
  return ::testing::AssertionSuccess();
}

std::string Fleet::control_address() const { return "127.0.0.1:" + std::to_string(control_port_); }

std::string Fleet::admin_token() const { return Trim(ReadFile(data_dir_ + "/admin.token")); }

// ---- proxies ----

::testing::AssertionResult Fleet::StartProxy(const std::string& id, size_t* index) {
  Proc proc;
  proc.id = id;
  proc.args = {"--listen",
               "127.0.0.1:0",
               "--control",
               control_address(),
               "--control-token-file",
               data_dir_ + "/proxy.token",
               "--snapshot",
               dir_ + "/" + id + ".snapshot.json",
               "--id",
               id};
  proxies_.push_back(std::move(proc));
  if (index != nullptr) *index = proxies_.size() - 1;
  return Launch("corral-proxy", &proxies_.back(), "corral-proxy");
}

::testing::AssertionResult Fleet::KillProxy(size_t index) {
  auto& p = proxies_[index];
  if (!p.process || p.process->Kill() == -1) {
    return ::testing::AssertionFailure() << "proxy " << p.id << " did not die";
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Fleet::RestartProxy(size_t index) {
  auto& p = proxies_[index];
  if (p.process && p.process->Running()) p.process->Kill();
  return Launch("corral-proxy", &p, "corral-proxy (restart)");
}

int Fleet::proxy_port(size_t index) const { return proxies_[index].port; }

// ---- sims ----

::testing::AssertionResult Fleet::StartSim(const std::string& models, size_t* index,
                                           std::vector<std::string> extra) {
  Proc proc;
  proc.args = {"--listen", "127.0.0.1:0", "--models", models};
  proc.args.insert(proc.args.end(), options_.sim_args.begin(), options_.sim_args.end());
  proc.args.insert(proc.args.end(), extra.begin(), extra.end());
  sims_.push_back(std::move(proc));
  if (index != nullptr) *index = sims_.size() - 1;
  return Launch("corral-sim", &sims_.back(), "corral-sim");
}

::testing::AssertionResult Fleet::KillSim(size_t index) {
  auto& s = sims_[index];
  if (!s.process || s.process->Kill() == -1) {
    return ::testing::AssertionFailure() << "sim " << index << " did not die";
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Fleet::RestartSim(size_t index) {
  auto& s = sims_[index];
  if (s.process && s.process->Running()) s.process->Kill();
  s.args[1] = "127.0.0.1:" + std::to_string(s.port);  // same port as before
  const int old_port = s.port;
  auto started = Launch("corral-sim", &s, "corral-sim (restart)");
  if (!started) return started;
  if (s.port != old_port) {
    return ::testing::AssertionFailure() << "sim restarted on " << s.port << ", not " << old_port;
  }
  return ::testing::AssertionSuccess();
}

std::string Fleet::sim_url(size_t index) const {
  return "http://127.0.0.1:" + std::to_string(sims_[index].port);
}

// ---- corralctl ----

CtlResult Fleet::Ctl(const std::vector<std::string>& args) const {
  std::vector<std::string> full = {"--control", control_address(), "--token", admin_token()};
  full.insert(full.end(), args.begin(), args.end());
  return CtlRaw(full);
}

CtlResult Fleet::CtlRaw(const std::vector<std::string>& args,
                        const std::map<std::string, std::string>& env) const {
  static std::atomic<int> counter{0};
  const std::string base = dir_ + "/corralctl-" + std::to_string(counter.fetch_add(1));
  const std::string out_path = base + ".out", err_path = base + ".err";
  const std::string binary = BinaryPath("corralctl");

  // The child sees the test's environment minus any CORRAL_* setting, plus `env`: what it
  // resolves must come from this test alone.
  std::vector<std::string> env_text;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).rfind("CORRAL_", 0) != 0) env_text.emplace_back(*e);
  }
  for (const auto& [k, v] : env) env_text.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_text = args;
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);

  CtlResult result;
  pid_t pid = ::fork();
  if (pid == 0) {
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(err, STDERR_FILENO);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::execve(binary.c_str(), argv.data(), envp.data());
    std::perror("execve");
    ::_exit(127);
  }
  // Every call but pull has a 5 s deadline; a minute bounds a pull that never ends.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int status = 0;
  while (true) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      result.err = "corralctl did not finish within 60 s\n";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = ReadFile(out_path);
  result.err += ReadFile(err_path);
  return result;
}

nlohmann::json Fleet::State() const {
  CtlResult r = Ctl({"--json", "state"});
  if (r.exit_code != 0) return nullptr;
  return r.Json();
}

uint64_t Fleet::SnapshotVersion() const {
  nlohmann::json state = State();
  if (!state.is_object()) return 0;
  return AsUint(state.value("snapshot_version", nlohmann::json()));
}

std::string Fleet::NodeHealth(const std::string& name) const {
  nlohmann::json state = State();
  if (!state.is_object() || !state.contains("nodes")) return "";
  for (const auto& info : state["nodes"]) {
    if (info["node"]["name"] == name) return info["node"]["health"].get<std::string>();
  }
  return "";
}

// ---- the proxies' view ----

nlohmann::json Fleet::ProxyState(size_t index) const {
  auto cli = MakeClient(proxies_[index].port);
  auto res = cli.Get("/api/proxy/state");
  if (!res || res->status != 200) return nullptr;
  return nlohmann::json::parse(res->body, nullptr, false);
}

uint64_t Fleet::ProxyAppliedVersion(size_t index) const {
  nlohmann::json state = ProxyState(index);
  if (!state.is_object()) return 0;
  for (const char* key : {"snapshot_version", "applied_version", "version"}) {
    if (state.contains(key)) return AsUint(state[key]);
  }
  if (state.contains("snapshot") && state["snapshot"].is_object()) {
    return AsUint(state["snapshot"].value("version", nlohmann::json()));
  }
  return 0;
}

bool Fleet::ProxyHasNode(size_t index, const std::string& name) const {
  nlohmann::json state = ProxyState(index);
  if (!state.is_object() || !state.contains("nodes")) return false;
  const auto& nodes = state["nodes"];
  if (nodes.is_object()) return nodes.contains(name);
  for (const auto& n : nodes) {
    if (n.is_object() && n.value("name", "") == name) return true;
  }
  return false;
}

::testing::AssertionResult Fleet::WaitProxiesInSync(std::chrono::milliseconds timeout) const {
  uint64_t want = 0;
  return WaitFor(
      [&] {
        want = SnapshotVersion();
        if (want == 0) return false;
        for (size_t i = 0; i < proxies_.size(); ++i) {
          if (ProxyAppliedVersion(i) != want) return false;
        }
        return true;
      },
      timeout, "every proxy to serve the control plane's snapshot version");
}

// ---- HTTP ----

HttpAnswer Fleet::Generate(size_t index, const std::string& model) const {
  auto cli = MakeClient(proxies_[index].port);
  nlohmann::json body = {{"model", model}, {"prompt", "hello"}, {"stream", false}};
  return FromResult(cli.Post("/api/generate", body.dump(), "application/json"));
}

nlohmann::json Fleet::SimStats(size_t index) const {
  auto cli = MakeClient(sims_[index].port);
  auto res = cli.Get("/_sim/stats");
  if (!res || res->status != 200) return nullptr;
  return nlohmann::json::parse(res->body, nullptr, false);
}

int64_t Fleet::SimRequests(size_t index, const std::string& path) const {
  nlohmann::json stats = SimStats(index);
  if (!stats.is_object() || !stats.contains("requests")) return 0;
  return stats["requests"].value(path, int64_t{0});
}

HttpAnswer Fleet::SimPost(size_t index, const std::string& path, const nlohmann::json& body) const {
  auto cli = MakeClient(sims_[index].port);
  return FromResult(cli.Post(path, body.dump(), "application/json"));
}

void Fleet::DumpLogs() const {
  for (const auto& p : retired_) p->DumpLog();
  if (control_) control_->DumpLog();
  for (const auto& p : proxies_) {
    if (p.process) p.process->DumpLog();
  }
  for (const auto& s : sims_) {
    if (s.process) s.process->DumpLog();
  }
}

}  // namespace corral::testing
