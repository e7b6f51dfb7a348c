// grpc_tls: credentials built from real PEM files (a CA made by the openssl command, see
// tests/tls/test_pki.h) and checked with real handshakes between a gRPC server and channel on
// loopback. A call that reaches the server's (unimplemented) method proves the handshake
// succeeded; a refused handshake is UNAVAILABLE.
#include "common/grpc_tls.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <fstream>

#include "corral/v1/control.grpc.pb.h"
#include "tests/support/process.h"
#include "tests/tls/test_pki.h"

namespace corral {
namespace {

using corral::testing::TestPki;

class GrpcTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(corral::testing::MakeTempDir("grpc-tls"));
    auto pki = corral::testing::MakeTestPki(*dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new TestPki(*pki);
  }
  static void TearDownTestSuite() {
    delete pki_;
    delete dir_;
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
  }

  // Starts a server on 127.0.0.1 with `files`; returns its port.
  int StartServer(const ServerTlsFiles& files) {
    auto security = MakeServerCredentials(files);
    EXPECT_TRUE(security.ok()) << security.status();
    if (!security.ok()) return 0;
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", security->credentials, &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    EXPECT_NE(server_, nullptr);
    return port;
  }

  // Calls Discovery.Report over a channel made with `files`: UNIMPLEMENTED means the call got
  // through the handshake to the server.
  static grpc::StatusCode Call(int port, const ClientTlsFiles& files) {
    auto security = MakeChannelCredentials(files);
    EXPECT_TRUE(security.ok()) << security.status();
    if (!security.ok()) return grpc::StatusCode::INTERNAL;
    auto stub = corral::v1::Discovery::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), security->credentials));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    corral::v1::ReportRequest req;
    corral::v1::ReportResponse resp;
    return stub->Report(&ctx, req, &resp).error_code();
  }

  static ServerTlsFiles Tls() { return {pki_->server_cert, pki_->server_key, ""}; }
  static ServerTlsFiles Mtls() { return {pki_->server_cert, pki_->server_key, pki_->ca_cert}; }

  static std::string* dir_;
  static TestPki* pki_;
  corral::v1::Discovery::Service service_;  // every method UNIMPLEMENTED
  std::unique_ptr<grpc::Server> server_;
};

std::string* GrpcTlsTest::dir_ = nullptr;
TestPki* GrpcTlsTest::pki_ = nullptr;

TEST_F(GrpcTlsTest, NoFilesMeansPlaintextOnBothSides) {
  auto server = MakeServerCredentials({});
  ASSERT_TRUE(server.ok());
  EXPECT_EQ(server->security, TransportSecurity::kPlaintext);
  auto client = MakeChannelCredentials({});
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client->security, TransportSecurity::kPlaintext);
  const int port = StartServer({});
  EXPECT_EQ(Call(port, {}), grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(GrpcTlsTest, TlsServerAcceptsAClientTrustingItsCa) {
  const int port = StartServer(Tls());
  ClientTlsFiles files;
  files.ca_file = pki_->ca_cert;
  EXPECT_EQ(MakeChannelCredentials(files)->security, TransportSecurity::kTls);
  EXPECT_EQ(Call(port, files), grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(GrpcTlsTest, TlsServerRefusesAPlaintextClient) {
  const int port = StartServer(Tls());
  EXPECT_EQ(Call(port, {}), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcTlsTest, ClientRefusesAServerSignedByAnotherCa) {
  const int port = StartServer(Tls());
  ClientTlsFiles files;
  files.ca_file = pki_->stranger_ca_cert;
  EXPECT_EQ(Call(port, files), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcTlsTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  const int port = StartServer(Mtls());
  EXPECT_EQ(MakeServerCredentials(Mtls())->security, TransportSecurity::kMutualTls);
  ClientTlsFiles anonymous;
  anonymous.ca_file = pki_->ca_cert;
  EXPECT_EQ(Call(port, anonymous), grpc::StatusCode::UNAVAILABLE);
  ClientTlsFiles stranger = {pki_->ca_cert, pki_->stranger_client_cert, pki_->stranger_client_key};
  EXPECT_EQ(Call(port, stranger), grpc::StatusCode::UNAVAILABLE);
  ClientTlsFiles member = {pki_->ca_cert, pki_->client_cert, pki_->client_key};
  EXPECT_EQ(MakeChannelCredentials(member)->security, TransportSecurity::kMutualTls);
  EXPECT_EQ(Call(port, member), grpc::StatusCode::UNIMPLEMENTED);
}

// ---- errors name the flag and the file ----

void ExpectError(const absl::Status& status, const std::string& fragment) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(fragment), std::string::npos) << status;
}

TEST_F(GrpcTlsTest, ServerCertWithoutKeyIsRefused) {
  ExpectError(MakeServerCredentials({pki_->server_cert, "", ""}).status(),
              "--tls-cert needs --tls-key");
  ExpectError(MakeServerCredentials({"", pki_->server_key, ""}).status(), "need --tls-cert");
  ExpectError(MakeServerCredentials({"", "", pki_->ca_cert}).status(), "need --tls-cert");
}

TEST_F(GrpcTlsTest, UnreadableFileIsNamedWithItsFlag) {
  const std::string missing = *dir_ + "/missing.crt";
  ExpectError(MakeServerCredentials({missing, pki_->server_key, ""}).status(),
              "--tls-cert " + missing + ": cannot read: No such file or directory");
  ClientTlsFiles files;
  files.ca_file = missing;
  files.flag_prefix = "--control-tls-";
  ExpectError(MakeChannelCredentials(files).status(), "--control-tls-ca " + missing);
}

TEST_F(GrpcTlsTest, NonPemFilesAreRefused) {
  const std::string text = *dir_ + "/not-pem.txt";
  std::ofstream(text) << "hello\n";
  ExpectError(MakeServerCredentials({text, pki_->server_key, ""}).status(), "not a PEM file");
  // A key where the certificate belongs, and the reverse.
  ExpectError(MakeServerCredentials({pki_->server_key, pki_->server_key, ""}).status(),
              "no PEM certificate");
  ExpectError(MakeServerCredentials({pki_->server_cert, pki_->server_cert, ""}).status(),
              "no unencrypted PEM private key");
}

TEST_F(GrpcTlsTest, KeyOfAnotherCertificateIsRefused) {
  ExpectError(MakeServerCredentials({pki_->server_cert, pki_->client_key, ""}).status(),
              "is not the private key of the certificate");
}

TEST_F(GrpcTlsTest, ClientCertificateNeedsKeyAndCa) {
  ExpectError(MakeChannelCredentials({"", pki_->client_cert, pki_->client_key}).status(),
              "need --tls-ca");
  ExpectError(MakeChannelCredentials({pki_->ca_cert, pki_->client_cert, ""}).status(),
              "--tls-cert needs --tls-key");
  ExpectError(MakeChannelCredentials({pki_->ca_cert, "", pki_->client_key}).status(),
              "--tls-key needs --tls-cert");
}

}  // namespace
}  // namespace corral
