// The HTTP admin API's pure parts: how a status reads over HTTP and how ?since= is parsed. The
// API itself is tested over real sockets in tests/admin/.
#include "controlplane/http_admin.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace corral::control {
namespace {

TEST(HttpStatusForTest, EachGrpcCodeHasTheUsualHttpStatus) {
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kOk), 200);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kFailedPrecondition), 400);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kAlreadyExists), 409);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kCancelled), 499);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInternal), 500);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kDeadlineExceeded), 504);
}

TEST(HttpErrorBodyTest, CarriesTheGrpcCodeItsNameAndTheMessage) {
  const nlohmann::json body =
      nlohmann::json::parse(HttpErrorBody(absl::NotFoundError("node \"x\" not found")));
  EXPECT_EQ(body["code"], 5);
  EXPECT_EQ(body["status"], "NOT_FOUND");
  EXPECT_EQ(body["message"], "node \"x\" not found");
}

TEST(ParseSinceSecondsTest, TakesSecondsOrAUnit) {
  EXPECT_EQ(*ParseSinceSeconds("3600"), 3600);
  EXPECT_EQ(*ParseSinceSeconds("90s"), 90);
  EXPECT_EQ(*ParseSinceSeconds("30m"), 1800);
  EXPECT_EQ(*ParseSinceSeconds("24h"), 86400);
  EXPECT_EQ(*ParseSinceSeconds("7d"), 7 * 86400);
  for (const char* bad : {"", "h", "-5", "+5", "0", "1.5h", "yesterday", "5y", "99999999999999999d"}) {
    EXPECT_EQ(ParseSinceSeconds(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace corral::control
