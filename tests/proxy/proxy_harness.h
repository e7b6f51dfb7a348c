// The proxy suites' harness: corral-proxy and corral-sim nodes as real processes on 127.0.0.1
// port 0, a snapshot file the test writes (what the control plane would push), and a raw-socket
// client that sees the exact bytes and can hang up at any moment. Every wait has a deadline.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/process.h"

namespace corral::proxy_testing {

using corral::testing::ChildProcess;
using corral::testing::WaitFor;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kDeadline(10000);

inline size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

// A client on a raw socket: the test sees the exact bytes (framing included) as they arrive and
// can hang up at any moment.
class RawClient {
 public:
  RawClient(int port, const std::string& request) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::send(fd_, request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
    reader_ = std::thread([this] {
      char buf[16384];
      while (true) {
        const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
        std::lock_guard<std::mutex> lock(mu_);
        if (n <= 0) {
          eof_ = true;
          return;
        }
        data_.append(buf, static_cast<size_t>(n));
      }
    });
  }
  ~RawClient() {
    Close();
    reader_.join();
    ::close(fd_);  // only now: the reader may be inside recv until the shutdown wakes it
  }
  // The client leaves: the connection is shut down (FIN to the proxy, and the reader's recv
  // returns). The descriptor itself is closed once the reader is done with it.
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    ::shutdown(fd_, SHUT_RDWR);
  }
  std::string data() {
    std::lock_guard<std::mutex> lock(mu_);
    return data_;
  }
  bool eof() {
    std::lock_guard<std::mutex> lock(mu_);
    return eof_;
  }

 private:
  int fd_ = -1;
  std::mutex mu_;
  std::string data_;
  bool eof_ = false;
  bool closed_ = false;
  std::thread reader_;
};

inline std::string Post(const std::string& path, const std::string& body,
                        const std::string& extra_headers = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n" +
         extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The proxy closes connections it refuses; a client writing to one must see EPIPE (as every
    // real client does), not end this process.
    signal(SIGPIPE, SIG_IGN);
    dir_ = corral::testing::MakeTempDir("proxy_test");
  }
  void TearDown() override {
    if (HasFailure()) {
      if (proxy_) proxy_->DumpLog();
      for (auto& sim : sims_) sim->DumpLog();
    }
    proxy_.reset();
    sims_.clear();
    std::filesystem::remove_all(dir_);
  }

  // Starts a corral-sim; returns its index.
  size_t StartSim(std::vector<std::string> args) {
    args.insert(args.begin(), {"--listen", "127.0.0.1:0"});
    sims_.push_back(
        std::make_unique<ChildProcess>(corral::testing::BinaryPath("corral-sim"), args, dir_));
    EXPECT_GT(sims_.back()->WaitForPort(), 0);
    return sims_.size() - 1;
  }
  int SimPort(size_t i) { return sims_[i]->port(); }

  json SimStats(size_t i) {
    httplib::Client cli("127.0.0.1", SimPort(i));
    auto res = cli.Get("/_sim/stats");
    if (!res || res->status != 200) return json::object();
    return json::parse(res->body);
  }
  void SimConfig(size_t i, const json& config) {
    httplib::Client cli("127.0.0.1", SimPort(i));
    auto res = cli.Post("/_sim/config", config.dump(), "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
  }
  void SimRelease(size_t i, int tokens) {
    httplib::Client cli("127.0.0.1", SimPort(i));
    auto res = cli.Post("/_sim/release", json{{"tokens", tokens}}.dump(), "application/json");
    ASSERT_TRUE(res);
  }

  // A snapshot node entry for sim `i` (or any port) listing `models`.
  static json Node(const std::string& name, int port, const std::vector<std::string>& models) {
    json node = {{"name", name},
                 {"url", "http://127.0.0.1:" + std::to_string(port)},
                 {"admin_state", "ADMIN_STATE_ENABLED"},
                 {"health", "HEALTH_HEALTHY"},
                 {"models", json::array()}};
    for (const auto& m : models) node["models"].push_back({{"name", m}});
    return node;
  }
  void WriteSnapshot(const json& nodes, uint64_t version = 1, json extra = json::object()) {
    json snapshot = {{"version", std::to_string(version)}, {"nodes", nodes}};
    snapshot.update(extra);
    const std::string tmp = dir_ + "/snapshot.json.tmp";
    std::ofstream(tmp) << snapshot.dump();
    std::filesystem::rename(tmp, dir_ + "/snapshot.json");
  }
  void StartProxy(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        "--listen", "127.0.0.1:0", "--snapshot", dir_ + "/snapshot.json", "--log-level", "debug"};
    args.insert(args.end(), extra.begin(), extra.end());
    proxy_ =
        std::make_unique<ChildProcess>(corral::testing::BinaryPath("corral-proxy"), args, dir_);
    ASSERT_GT(proxy_->WaitForPort(), 0);
  }
  int ProxyPort() { return proxy_->port(); }
  std::unique_ptr<httplib::Client> Client() {
    auto cli = std::make_unique<httplib::Client>("127.0.0.1", ProxyPort());
    cli->set_read_timeout(seconds(30));
    return cli;
  }
  json State() {
    auto res = Client()->Get("/api/proxy/state");
    EXPECT_TRUE(res);
    return res ? json::parse(res->body) : json::object();
  }
  static json NodeState(const json& state, const std::string& name) {
    for (const auto& n : state["nodes"]) {
      if (n["name"] == name) return n;
    }
    return json::object();
  }
  int64_t Requests(size_t sim, const std::string& path) {
    json stats = SimStats(sim);
    return stats["requests"].value(path, int64_t{0});
  }

  std::string dir_;
  std::vector<std::unique_ptr<ChildProcess>> sims_;
  std::unique_ptr<ChildProcess> proxy_;
};

}  // namespace corral::proxy_testing
