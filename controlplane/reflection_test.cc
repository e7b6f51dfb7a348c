// Server reflection on a real corral-control: a generic gRPC client, knowing no schema, lists
// the services and fetches the descriptors of the admin API and of the health service — what
// grpcurl and buf curl do before they can call a method.
//
// The reflection messages are written and read as raw protobuf bytes on purpose: linking code
// generated from grpc-proto's reflection.proto beside libgrpc++_reflection aborts at start-up
// (duplicate descriptors), and this test must not depend on either to prove the server side.
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/support/process.h"

namespace corral::control {
namespace {

using corral::testing::BinaryPath;
using corral::testing::ChildProcess;
using corral::testing::MakeTempDir;

// One request/response exchange on the bidirectional ServerReflectionInfo stream.
std::string Reflect(const std::shared_ptr<grpc::Channel>& channel, const std::string& request) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call =
      stub.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag = nullptr;
  bool ok = false;
  auto step = [&](void* expected) { return cq.Next(&tag, &ok) && tag == expected && ok; };
  call->StartCall(reinterpret_cast<void*>(1));
  if (!step(reinterpret_cast<void*>(1))) return "";
  grpc::Slice slice(request);
  grpc::ByteBuffer out(&slice, 1);
  call->Write(out, reinterpret_cast<void*>(2));
  if (!step(reinterpret_cast<void*>(2))) return "";
  grpc::ByteBuffer in;
  call->Read(&in, reinterpret_cast<void*>(3));
  if (!step(reinterpret_cast<void*>(3))) return "";
  call->WritesDone(reinterpret_cast<void*>(4));
  step(reinterpret_cast<void*>(4));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  step(reinterpret_cast<void*>(5));
  std::vector<grpc::Slice> slices;
  if (!in.Dump(&slices).ok()) return "";
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return bytes;
}

// A length-delimited protobuf string field.
std::string StringField(int field, const std::string& value) {
  std::string out(1, static_cast<char>((field << 3) | 2));
  out.push_back(static_cast<char>(value.size()));  // every value here is under 128 bytes
  return out + value;
}

// The FileDescriptorProtos of a ServerReflectionResponse's file_descriptor_response (field 4,
// itself a FileDescriptorResponse whose field 1 repeats the serialised files). Empty when the
// response holds none (an error_response, field 7, for an unknown symbol).
std::vector<google::protobuf::FileDescriptorProto> Files(const std::string& response) {
  using google::protobuf::internal::WireFormatLite;
  std::vector<google::protobuf::FileDescriptorProto> files;
  // The submessages of field `field` in `bytes`.
  auto fields = [](const std::string& bytes, int field) {
    std::vector<std::string> out;
    google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                              static_cast<int>(bytes.size()));
    while (uint32_t tag = in.ReadTag()) {
      if (WireFormatLite::GetTagFieldNumber(tag) == field &&
          WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
        std::string value;
        if (!WireFormatLite::ReadBytes(&in, &value)) break;
        out.push_back(std::move(value));
      } else if (!WireFormatLite::SkipField(&in, tag)) {
        break;
      }
    }
    return out;
  };
  for (const std::string& fdr : fields(response, 4)) {
    for (const std::string& file : fields(fdr, 1)) {
      google::protobuf::FileDescriptorProto proto;
      if (proto.ParseFromString(file)) files.push_back(std::move(proto));
    }
  }
  return files;
}

TEST(ReflectionTest, ASchemaLessClientListsTheServicesAndFetchesTheAdminApi) {
  const std::string dir = MakeTempDir("reflection");
  ChildProcess control(BinaryPath("corral-control"),
                       {"--listen", "127.0.0.1:0", "--data-dir", dir + "/data", "--no-probe"}, dir);
  const int port = control.WaitForPort();
  ASSERT_GT(port, 0) << control.Log();
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());

  // ServerReflectionRequest.list_services (field 7), no admin token: reflection stays open.
  const std::string services = Reflect(channel, StringField(7, ""));
  EXPECT_NE(services.find("corral.v1.Admin"), std::string::npos);
  EXPECT_NE(services.find("corral.v1.Discovery"), std::string::npos);
  EXPECT_NE(services.find("grpc.health.v1.Health"), std::string::npos);

  // ServerReflectionRequest.file_containing_symbol (field 4): the descriptor of control.proto.
  const std::string file = Reflect(channel, StringField(4, "corral.v1.Admin"));
  EXPECT_NE(file.find("corral/v1/control.proto"), std::string::npos);
  EXPECT_NE(file.find("CreateNode"), std::string::npos);

  // The health service's schema too: grpc.health.v1.Health/Check is callable by a client that
  // has no local copy of health.proto.
  bool found_check = false;
  for (const auto& proto : Files(Reflect(channel, StringField(4, "grpc.health.v1.Health")))) {
    if (proto.package() != "grpc.health.v1") continue;
    for (const auto& service : proto.service()) {
      if (service.name() != "Health") continue;
      for (const auto& method : service.method()) {
        if (method.name() == "Check") {
          found_check = true;
          EXPECT_EQ(method.input_type(), ".grpc.health.v1.HealthCheckRequest");
          EXPECT_EQ(method.output_type(), ".grpc.health.v1.HealthCheckResponse");
        }
      }
    }
  }
  EXPECT_TRUE(found_check) << "no grpc.health.v1.Health/Check in the descriptor served for it";
}

}  // namespace
}  // namespace corral::control
