// The control door, end to end: corral-control serving its gRPC port over TLS and mutual TLS,
// with a CA and certificates made by the openssl command in the test (test_pki.h), and the real
// corral-proxy and corralctl binaries talking to it as an operator would run them. Also what the
// control plane leaves on disk: an owner-only data dir, database and token files.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/control/fleet.h"
#include "tests/support/process.h"
#include "tests/tls/test_pki.h"

namespace corral::testing {
namespace {

using std::chrono::seconds;

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 07777;
  return st.st_mode & 07777;
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto pki = MakeTestPki(MakeTempDir("tls-pki"));
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new TestPki(*pki);
  }
  static void TearDownTestSuite() { delete pki_; }

  void TearDown() override {
    if (HasFailure()) {
      for (auto* p : {control_.get(), proxy_.get()}) {
        if (p != nullptr) p->DumpLog();
      }
    }
    proxy_.reset();
    control_.reset();
  }

  // Starts corral-control on 127.0.0.1:0 with `tls_args`; false if it did not come up.
  bool StartControl(const std::vector<std::string>& tls_args) {
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--data-dir",
                                     data_dir_,  "--no-probe",  "--no-discovery",
                                     "--http-listen", "off"};
    args.insert(args.end(), tls_args.begin(), tls_args.end());
    control_ = std::make_unique<ChildProcess>(BinaryPath("corral-control"), args, dir_);
    return control_->WaitForPort(seconds(15)) > 0;
  }
  std::string control_address() const { return "127.0.0.1:" + std::to_string(control_->port()); }
  std::string admin_token() const { return Trimmed(ReadFile(data_dir_ + "/admin.token")); }

  bool StartProxy(const std::vector<std::string>& tls_args) {
    std::vector<std::string> args = {"--listen",
                                     "127.0.0.1:0",
                                     "--control",
                                     control_address(),
                                     "--id",
                                     "tls-proxy",
                                     "--snapshot",
                                     dir_ + "/proxy-snapshot.json",
                                     "--control-token-file",
                                     data_dir_ + "/proxy.token"};
    args.insert(args.end(), tls_args.begin(), tls_args.end());
    proxy_ = std::make_unique<ChildProcess>(BinaryPath("corral-proxy"), args, dir_);
    return proxy_->WaitForPort(seconds(15)) > 0;
  }

  // Whether the proxy's routing table lists node `name` (GET /api/proxy/state).
  bool ProxyHasNode(const std::string& name) const {
    httplib::Client cli("127.0.0.1", proxy_->port());
    cli.set_connection_timeout(2);
    cli.set_read_timeout(2);
    auto res = cli.Get("/api/proxy/state");
    if (!res || res->status != 200) return false;
    const auto state = nlohmann::json::parse(res->body, nullptr, false);
    if (!state.is_object() || !state.contains("nodes")) return false;
    for (const auto& node : state["nodes"]) {
      if (node.is_object() && node.value("name", "") == name) return true;
    }
    return false;
  }

  // corralctl against the control plane with the admin token and `args` (TLS flags included).
  CtlResult Ctl(const std::vector<std::string>& args) const {
    std::vector<std::string> full = {"--control", control_address(), "--token", admin_token()};
    full.insert(full.end(), args.begin(), args.end());
    return ctl_.CtlRaw(full);
  }

  static TestPki* pki_;
  std::string dir_ = MakeTempDir("tls");
  std::string data_dir_ = dir_ + "/control-data";
  Fleet ctl_;  // only its corralctl runner is used: every process here is started by the test
  std::unique_ptr<ChildProcess> control_;
  std::unique_ptr<ChildProcess> proxy_;
};

TestPki* TlsTest::pki_ = nullptr;

TEST_F(TlsTest, ProxyAndCorralctlWorkOverTls) {
  ASSERT_TRUE(StartControl({"--tls-cert", pki_->server_cert, "--tls-key", pki_->server_key}));
  // The line may follow the port file by a moment: waited for, not read at once.
  EXPECT_TRUE(WaitFor([&] { return control_->Log().find("(TLS, data dir") != std::string::npos; },
                      seconds(10), "the log to say (TLS, data dir"))
      << control_->Log();
  ASSERT_TRUE(StartProxy({"--control-tls-ca", pki_->ca_cert}));

  CtlResult added = Ctl({"--tls-ca", pki_->ca_cert, "node", "add", "gpu-tls", "127.0.0.1:9"});
  ASSERT_EQ(added.exit_code, 0) << added;
  // The node reached the proxy: the Watch stream runs over TLS.
  EXPECT_TRUE(WaitFor([&] { return ProxyHasNode("gpu-tls"); }, seconds(15), "node on the proxy"));
  // The line may follow the port file by a moment: waited for, not read at once.
  EXPECT_TRUE(WaitFor([&] { return proxy_->Log().find("(TLS)") != std::string::npos; }, seconds(10),
                      "the log to say (TLS)"))
      << proxy_->Log();

  // The CA may come from the environment too.
  CtlResult listed = ctl_.CtlRaw(
      {"--control", control_address(), "--token", admin_token(), "--json", "node", "list"},
      {{"CORRAL_TLS_CA", pki_->ca_cert}});
  ASSERT_EQ(listed.exit_code, 0) << listed;
  EXPECT_NE(listed.out.find("gpu-tls"), std::string::npos) << listed;
}

TEST_F(TlsTest, PlaintextAndUntrustingClientsAreRefusedWithAClearError) {
  ASSERT_TRUE(StartControl({"--tls-cert", pki_->server_cert, "--tls-key", pki_->server_key}));
  CtlResult plain = Ctl({"node", "list"});
  EXPECT_EQ(plain.exit_code, 1) << plain;
  EXPECT_NE(plain.err.find("cannot reach the control plane at " + control_address()),
            std::string::npos)
      << plain;
  EXPECT_NE(plain.err.find("if the control plane serves TLS, pass --tls-ca FILE"),
            std::string::npos)
      << plain;

  // A client that trusts another CA refuses the server's certificate.
  CtlResult stranger = Ctl({"--tls-ca", pki_->stranger_ca_cert, "node", "list"});
  EXPECT_EQ(stranger.exit_code, 1) << stranger;
  EXPECT_NE(stranger.err.find("over TLS: check that --tls-ca is the CA"), std::string::npos)
      << stranger;

  // A CA file that is not there is named, before any connection is tried.
  CtlResult missing = Ctl({"--tls-ca", dir_ + "/nope.crt", "node", "list"});
  EXPECT_EQ(missing.exit_code, 1) << missing;
  EXPECT_NE(missing.err.find("--tls-ca " + dir_ + "/nope.crt: cannot read"), std::string::npos)
      << missing;
}

TEST_F(TlsTest, MutualTlsRefusesAClientWithoutACertificate) {
  ASSERT_TRUE(StartControl({"--tls-cert", pki_->server_cert, "--tls-key", pki_->server_key,
                            "--tls-client-ca", pki_->ca_cert}));
  // The line may follow the port file by a moment: waited for, not read at once.
  EXPECT_TRUE(WaitFor([&] { return control_->Log().find("(mTLS, data dir") != std::string::npos; },
                      seconds(10), "the log to say (mTLS, data dir"))
      << control_->Log();

  CtlResult anonymous = Ctl({"--tls-ca", pki_->ca_cert, "node", "list"});
  EXPECT_EQ(anonymous.exit_code, 1) << anonymous;
  EXPECT_NE(anonymous.err.find("cannot reach the control plane"), std::string::npos) << anonymous;

  CtlResult stranger = Ctl({"--tls-ca", pki_->ca_cert, "--tls-cert", pki_->stranger_client_cert,
                            "--tls-key", pki_->stranger_client_key, "node", "list"});
  EXPECT_EQ(stranger.exit_code, 1) << stranger;

  CtlResult member = Ctl({"--tls-ca", pki_->ca_cert, "--tls-cert", pki_->client_cert, "--tls-key",
                          pki_->client_key, "node", "add", "gpu-m", "127.0.0.1:9"});
  ASSERT_EQ(member.exit_code, 0) << member;

  // A proxy presenting the client certificate gets its snapshots.
  ASSERT_TRUE(StartProxy({"--control-tls-ca", pki_->ca_cert, "--control-tls-cert",
                          pki_->client_cert, "--control-tls-key", pki_->client_key}));
  EXPECT_TRUE(WaitFor([&] { return ProxyHasNode("gpu-m"); }, seconds(15), "node on the proxy"));
  // The line may follow the port file by a moment: waited for, not read at once.
  EXPECT_TRUE(WaitFor([&] { return proxy_->Log().find("(mTLS)") != std::string::npos; },
                      seconds(10), "the log to say (mTLS)"))
      << proxy_->Log();
}

TEST_F(TlsTest, BadTlsFilesStopTheControlPlaneWithTheReason) {
  EXPECT_FALSE(StartControl({"--tls-cert", pki_->server_cert}));
  EXPECT_TRUE(WaitFor([&] { return !control_->Running(); }, seconds(10), "exit"));
  EXPECT_NE(control_->Log().find("--tls-cert needs --tls-key"), std::string::npos)
      << control_->Log();

  EXPECT_FALSE(StartControl({"--tls-cert", pki_->server_cert, "--tls-key", pki_->client_key}));
  EXPECT_TRUE(WaitFor([&] { return !control_->Running(); }, seconds(10), "exit"));
  EXPECT_NE(control_->Log().find("is not the private key of the certificate"), std::string::npos)
      << control_->Log();
}

TEST_F(TlsTest, DataDirDatabaseAndTokensAreOwnerOnly) {
  // A data dir and a token file left readable by everyone (an older version, a careless copy).
  std::filesystem::create_directories(data_dir_);
  ASSERT_EQ(::chmod(data_dir_.c_str(), 0755), 0);
  std::ofstream(data_dir_ + "/admin.token") << "an-old-admin-token\n";
  ASSERT_EQ(::chmod((data_dir_ + "/admin.token").c_str(), 0644), 0);

  ASSERT_TRUE(StartControl({}));
  EXPECT_EQ(ModeOf(data_dir_), 0700u);
  for (const char* file :
       {"corral.db", "corral.db-wal", "corral.db-shm", "admin.token", "proxy.token"}) {
    EXPECT_EQ(ModeOf(data_dir_ + "/" + file), 0600u) << file;
  }
  EXPECT_EQ(admin_token(), "an-old-admin-token");
  const std::string log = control_->Log();
  EXPECT_NE(log.find("data dir " + data_dir_ + " had mode 0755, now 0700"), std::string::npos)
      << log;
  EXPECT_NE(log.find("admin.token had mode 0644, now 0600"), std::string::npos) << log;
  EXPECT_NE(log.find("(plaintext, data dir"), std::string::npos) << log;
  // Plaintext on loopback is the quiet default.
  EXPECT_EQ(log.find("the gRPC port is plaintext"), std::string::npos) << log;

  // The proxy's on-disk copy is owner-only too.
  ASSERT_TRUE(StartProxy({}));
  ASSERT_EQ(Ctl({"node", "add", "gpu-f", "127.0.0.1:9"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return ProxyHasNode("gpu-f"); }, seconds(15), "node on the proxy"));
  EXPECT_TRUE(WaitFor(
      [&] { return ReadFile(dir_ + "/proxy-snapshot.json").find("gpu-f") != std::string::npos; },
      seconds(15), "on-disk copy"));
  EXPECT_EQ(ModeOf(dir_ + "/proxy-snapshot.json"), 0600u);
}

}  // namespace
}  // namespace corral::testing
