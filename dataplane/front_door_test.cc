// FrontDoor: what corral-proxy decides on a request's head alone (docs/security.md
// "Authorization and admission on the head, for every route"): the body budget, browser
// origins, the inference token and its scope, admission against --max-streams, and the body's
// size and room in the budget. Heads are parsed from raw bytes by the proxy's own parser and
// checked against a snapshot applied to a real SnapshotStore.
#include "dataplane/front_door.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/token_hash.h"
#include "dataplane/replies.h"

namespace corral::dataplane {
namespace {

using Fields = std::initializer_list<std::pair<std::string_view, std::string_view>>;

// The head of `request_line` (method and target) with a Host and `fields`, as the listener
// hands it to the front door.
RequestHead Head(std::string_view request_line, Fields fields = {}) {
  std::string bytes = std::string(request_line) + " HTTP/1.1\r\nHost: proxy.test\r\n";
  for (const auto& [name, value] : fields) {
    bytes.append(name).append(": ").append(value).append("\r\n");
  }
  bytes += "\r\n";
  HeadParse parsed = ParseRequestHead(bytes);
  if (!parsed.head.has_value()) {
    ADD_FAILURE() << "test head refused (" << parsed.error.status << " " << parsed.error.message
                  << "): " << bytes;
    return RequestHead{};
  }
  return *std::move(parsed.head);
}

constexpr std::string_view kToken = "c0rral-token-for-everything";
constexpr std::string_view kLlamaToken = "c0rral-token-for-llama3-only";
const std::string kBlob = "/api/blobs/sha256:" + std::string(64, 'a');

// One enabled node with one model; no token (the fleet is open).
corral::v1::Snapshot OpenFleet() {
  corral::v1::Snapshot snapshot;
  snapshot.set_version(1);
  auto* node = snapshot.add_nodes();
  node->set_name("gpu-1");
  node->set_url("http://127.0.0.1:1");
  node->set_admin_state(corral::v1::ADMIN_STATE_ENABLED);
  node->add_models()->set_name("llama3:latest");
  return snapshot;
}

// The open fleet closed by two tokens: "everything", and "llama-only" limited to one model.
corral::v1::Snapshot ClosedFleet() {
  corral::v1::Snapshot snapshot = OpenFleet();
  auto* all = snapshot.add_tokens();
  all->set_name("everything");
  all->set_sha256_hex(corral::TokenSha256Hex(kToken));
  auto* llama = snapshot.add_tokens();
  llama->set_name("llama-only");
  llama->set_sha256_hex(corral::TokenSha256Hex(kLlamaToken));
  llama->add_models("llama3:latest");
  return snapshot;
}

std::string Bearer(std::string_view token) { return "Bearer " + std::string(token); }

// A proxy's front door over its own store and budget.
struct Proxy {
  explicit Proxy(FrontDoorOptions options = {}, uint64_t budget_bytes = uint64_t{1} << 30)
      : budget(budget_bytes), door(std::move(options), store, budget) {}

  void Serve(corral::v1::Snapshot snapshot) {
    const absl::Status applied = store.Apply(std::move(snapshot), "test");
    ASSERT_TRUE(applied.ok()) << applied;
  }
  HeadVerdict Check(const RequestHead& head) { return door.Check(head, "127.0.0.1"); }

  SnapshotStore store;
  BodyBudget budget;
  FrontDoor door;
};

FrontDoorOptions MaxStreams(int64_t max_streams) {
  FrontDoorOptions options;
  options.max_streams = max_streams;
  return options;
}

FrontDoorOptions MaxBody(uint64_t max_body_bytes) {
  FrontDoorOptions options;
  options.max_body_bytes = max_body_bytes;
  return options;
}

std::shared_ptr<Admitted> TicketOf(const HeadVerdict& verdict) {
  return std::static_pointer_cast<Admitted>(verdict.ticket);
}

// The value of the refusal's header `name`, or "" when it has none.
std::string HeaderOf(const HeadVerdict& verdict, std::string_view name) {
  for (const auto& [field, value] : verdict.headers) {
    if (field == name) return value;
  }
  return "";
}

// The message of an Ollama error body ({"error": "..."}).
std::string OllamaError(const HeadVerdict& verdict) {
  const auto body = nlohmann::json::parse(verdict.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("error") || !body["error"].is_string()) {
    ADD_FAILURE() << "not an Ollama error body: " << verdict.body;
    return "";
  }
  return body["error"].get<std::string>();
}

// Admitted: status 0 and a ticket.
::testing::AssertionResult IsAdmitted(const HeadVerdict& verdict) {
  if (verdict.status != 0) {
    return ::testing::AssertionFailure() << "refused " << verdict.status << ": " << verdict.body;
  }
  if (verdict.ticket == nullptr) return ::testing::AssertionFailure() << "admitted without ticket";
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------
// BodyBudget

TEST(BodyBudgetTest, ReservationGrowsUpToTheLimitAndNoFurther) {
  BodyBudget budget(100);
  BodyBudget::Reservation body = budget.Start();
  EXPECT_TRUE(body.Grow(60));
  EXPECT_EQ(budget.used(), 60u);
  EXPECT_FALSE(body.Grow(41)) << "60 + 41 is past the limit of 100";
  EXPECT_EQ(body.bytes(), 60u) << "a refused growth reserves nothing";
  EXPECT_EQ(budget.used(), 60u);
  EXPECT_TRUE(body.Grow(40));
  EXPECT_EQ(budget.used(), 100u);
  EXPECT_FALSE(body.Grow(1));
  EXPECT_EQ(body.bytes(), 100u);
}

TEST(BodyBudgetTest, GrowthLargerThanTheWholeBudgetIsRefusedWithoutOverflow) {
  BodyBudget budget(100);
  BodyBudget::Reservation first = budget.Start();
  ASSERT_TRUE(first.Grow(10));
  BodyBudget::Reservation second = budget.Start();
  EXPECT_FALSE(second.Grow(101));
  EXPECT_FALSE(second.Grow(UINT64_MAX)) << "10 + 2^64-1 must not wrap around to 9";
  EXPECT_FALSE(second.Grow(UINT64_MAX - 5));
  EXPECT_EQ(second.bytes(), 0u);
  EXPECT_EQ(budget.used(), 10u);
}

TEST(BodyBudgetTest, SeveralReservationsShareTheLimit) {
  BodyBudget budget(100);
  BodyBudget::Reservation a = budget.Start();
  BodyBudget::Reservation b = budget.Start();
  EXPECT_TRUE(a.Grow(70));
  EXPECT_FALSE(b.Grow(31));
  EXPECT_TRUE(b.Grow(30));
  EXPECT_EQ(budget.used(), 100u);
}

TEST(BodyBudgetTest, DestructorReleasesTheReservation) {
  BodyBudget budget(100);
  {
    BodyBudget::Reservation body = budget.Start();
    ASSERT_TRUE(body.Grow(30));
    ASSERT_TRUE(body.Grow(20));
    EXPECT_EQ(budget.used(), 50u);
  }
  EXPECT_EQ(budget.used(), 0u);
}

TEST(BodyBudgetTest, ReleaseGivesBackOnceAndTheReservationCanGrowAgain) {
  BodyBudget budget(100);
  BodyBudget::Reservation other = budget.Start();
  ASSERT_TRUE(other.Grow(10));
  BodyBudget::Reservation body = budget.Start();
  ASSERT_TRUE(body.Grow(90));
  body.Release();
  EXPECT_EQ(body.bytes(), 0u);
  EXPECT_EQ(budget.used(), 10u);
  body.Release();
  EXPECT_EQ(budget.used(), 10u) << "a second Release gives back nothing";
  EXPECT_TRUE(body.Grow(90)) << "a released reservation still belongs to its budget";
  EXPECT_EQ(budget.used(), 100u);
}

TEST(BodyBudgetTest, MoveConstructionHandsTheBytesOver) {
  BodyBudget budget(100);
  std::optional<BodyBudget::Reservation> moved_to;
  {
    BodyBudget::Reservation body = budget.Start();
    ASSERT_TRUE(body.Grow(40));
    moved_to.emplace(std::move(body));
    EXPECT_EQ(body.bytes(), 0u);  // NOLINT(bugprone-use-after-move): the moved-from state
    EXPECT_FALSE(body.Grow(1)) << "a moved-from reservation belongs to no budget";
  }
  EXPECT_EQ(budget.used(), 40u) << "the moved-from reservation's end released nothing";
  EXPECT_EQ(moved_to->bytes(), 40u);
  moved_to.reset();
  EXPECT_EQ(budget.used(), 0u);
}

TEST(BodyBudgetTest, MoveAssignmentReleasesWhatTheTargetHeld) {
  BodyBudget budget(100);
  BodyBudget::Reservation target = budget.Start();
  ASSERT_TRUE(target.Grow(30));
  BodyBudget::Reservation source = budget.Start();
  ASSERT_TRUE(source.Grow(50));
  target = std::move(source);
  EXPECT_EQ(target.bytes(), 50u);
  EXPECT_EQ(budget.used(), 50u) << "the target's own 30 bytes were given back";
  BodyBudget::Reservation& same = target;
  target = std::move(same);  // self-assignment keeps the bytes
  EXPECT_EQ(budget.used(), 50u);
  EXPECT_EQ(target.bytes(), 50u);
}

TEST(BodyBudgetTest, ReservationWithoutBudgetReservesNothing) {
  BodyBudget::Reservation none;
  EXPECT_FALSE(none.Grow(1));
  EXPECT_EQ(none.bytes(), 0u);
  none.Release();
}

// Threads racing to fill the budget a few bytes at a time: every one of them is refused at some
// point, the sum of what they hold never passes the limit, and all of it comes back.
TEST(BodyBudgetTest, ConcurrentGrowthNeverPassesTheLimit) {
  constexpr uint64_t kLimit = 1000;
  constexpr int kThreads = 8;
  constexpr int kRounds = 300;
  BodyBudget budget(kLimit);
  std::atomic<int> ready{0};
  std::atomic<uint64_t> peak{0};
  std::atomic<uint64_t> refusals{0};
  std::atomic<bool> over_limit{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();  // start together
      for (int round = 0; round < kRounds; ++round) {
        BodyBudget::Reservation body = budget.Start();
        const uint64_t step = 1 + static_cast<uint64_t>((t + round) % 13);
        while (body.Grow(step)) {
          const uint64_t used = budget.used();
          if (used > kLimit || body.bytes() > kLimit) over_limit = true;
          uint64_t seen = peak.load();
          while (used > seen && !peak.compare_exchange_weak(seen, used)) {
          }
        }
        refusals.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_FALSE(over_limit.load());
  EXPECT_LE(peak.load(), kLimit);
  EXPECT_EQ(refusals.load(), uint64_t{kThreads} * kRounds);
  EXPECT_EQ(budget.used(), 0u) << "every reservation was given back";
}

// ---------------------------------------------------------------------------------------------
// Browser origins

TEST(OriginTest, DefaultsAreOllamasOwn) {
  SnapshotStore store;
  BodyBudget budget(1);
  FrontDoor door({}, store, budget);
  for (const char* origin :
       {"http://localhost", "https://localhost", "https://localhost:3000", "http://127.0.0.1",
        "http://127.0.0.1:8080", "https://127.0.0.1:443", "http://0.0.0.0", "http://0.0.0.0:80",
        "app://x", "file://", "file:///home/user/index.html", "tauri://localhost",
        "vscode-webview://abc", "vscode-file://vscode-app"}) {
    EXPECT_TRUE(door.OriginAllowed(origin)) << origin;
  }
  EXPECT_FALSE(door.AnyOrigin());
}

TEST(OriginTest, DefaultsRefuseEveryOtherSite) {
  SnapshotStore store;
  BodyBudget budget(1);
  FrontDoor door({}, store, budget);
  for (const char* origin :
       {"http://example.com", "https://example.com:443", "http://localhost.evil.com",
        "https://localhost.evil.com:3000", "http://localhostevil.com", "https://127.0.0.1.evil",
        "http://127.0.0.1.nip.io:8080", "http://0.0.0.0.evil.com", "ftp://localhost", "localhost",
        "http://[::1]", "null", "chrome-extension://abc"}) {
    EXPECT_FALSE(door.OriginAllowed(origin)) << origin;
  }
}

TEST(OriginTest, DefaultListNamesEveryHostOnBothSchemesAndTheAppSchemes) {
  const std::vector<std::string> origins = DefaultAllowedOrigins();
  for (const char* expected :
       {"http://localhost", "http://localhost:*", "https://localhost", "https://localhost:*",
        "http://127.0.0.1", "http://127.0.0.1:*", "https://127.0.0.1", "https://127.0.0.1:*",
        "http://0.0.0.0", "http://0.0.0.0:*", "https://0.0.0.0", "https://0.0.0.0:*", "app://*",
        "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"}) {
    EXPECT_NE(std::find(origins.begin(), origins.end(), expected), origins.end()) << expected;
  }
  EXPECT_EQ(origins.size(), 17u);
}

TEST(OriginTest, StarAllowsAnyOrigin) {
  SnapshotStore store;
  BodyBudget budget(1);
  FrontDoorOptions options;
  options.allow_origins = {"*"};
  FrontDoor door(options, store, budget);
  EXPECT_TRUE(door.AnyOrigin());
  EXPECT_TRUE(door.OriginAllowed("http://example.com"));
  EXPECT_TRUE(door.OriginAllowed("http://localhost.evil.com"));
  EXPECT_TRUE(door.OriginAllowed("http://localhost"));
}

TEST(OriginTest, ExplicitListReplacesTheDefaults) {
  SnapshotStore store;
  BodyBudget budget(1);
  FrontDoorOptions options;
  options.allow_origins = {"https://chat.example.com", "https://app.example.com:*"};
  FrontDoor door(options, store, budget);
  EXPECT_FALSE(door.AnyOrigin());
  EXPECT_TRUE(door.OriginAllowed("https://chat.example.com"));
  EXPECT_TRUE(door.OriginAllowed("https://app.example.com:8443"));
  EXPECT_FALSE(door.OriginAllowed("https://chat.example.com.evil"))
      << "an entry without '*' is matched exactly";
  EXPECT_FALSE(door.OriginAllowed("http://chat.example.com"));
  EXPECT_FALSE(door.OriginAllowed("http://localhost")) << "the defaults are gone";
  EXPECT_FALSE(door.OriginAllowed("app://x"));
}

// ---------------------------------------------------------------------------------------------
// Check: origin and token

TEST(FrontDoorCheckTest, DisallowedOriginGets403WithEmptyBody) {
  Proxy proxy;
  proxy.Serve(OpenFleet());
  const HeadVerdict verdict =
      proxy.Check(Head("POST /api/chat", {{"Origin", "http://example.com"}}));
  EXPECT_EQ(verdict.status, 403);
  EXPECT_EQ(verdict.body, "");
  EXPECT_EQ(verdict.ticket, nullptr);
  EXPECT_EQ(proxy.door.active(), 0);
}

TEST(FrontDoorCheckTest, DisallowedOriginIsRefusedEvenWithAValidToken) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  const HeadVerdict verdict =
      proxy.Check(Head("GET /api/tags", {{"Origin", "http://localhost.evil.com"},
                                         {"Authorization", Bearer(kToken)}}));
  EXPECT_EQ(verdict.status, 403);
  EXPECT_EQ(verdict.body, "");
}

TEST(FrontDoorCheckTest, AllowedOriginIsAdmitted) {
  Proxy proxy;
  proxy.Serve(OpenFleet());
  EXPECT_TRUE(
      IsAdmitted(proxy.Check(Head("GET /api/tags", {{"Origin", "http://localhost:3000"}}))));
}

TEST(FrontDoorCheckTest, PreflightIsAdmittedWithoutTokenOrSlot) {
  Proxy proxy(MaxStreams(1));
  proxy.Serve(ClosedFleet());
  const HeadVerdict verdict =
      proxy.Check(Head("OPTIONS /api/chat", {{"Origin", "http://localhost:3000"},
                                             {"Access-Control-Request-Method", "POST"}}));
  EXPECT_TRUE(IsAdmitted(verdict));
  EXPECT_EQ(proxy.door.active(), 0);
}

TEST(FrontDoorCheckTest, UnknownPathIsAdmittedWithoutToken) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  const HeadVerdict verdict = proxy.Check(Head("GET /no/such/path"));
  EXPECT_TRUE(IsAdmitted(verdict));
  ASSERT_NE(TicketOf(verdict), nullptr);
  EXPECT_EQ(TicketOf(verdict)->route.route_class, RouteClass::kError);
  EXPECT_EQ(TicketOf(verdict)->token, nullptr);
  EXPECT_EQ(proxy.door.active(), 0);
}

TEST(FrontDoorCheckTest, OpenFleetNeedsNoToken) {
  Proxy proxy;
  proxy.Serve(OpenFleet());
  const HeadVerdict verdict = proxy.Check(Head("POST /api/chat", {{"Content-Length", "2"}}));
  EXPECT_TRUE(IsAdmitted(verdict));
  EXPECT_EQ(TicketOf(verdict)->token, nullptr);
}

TEST(FrontDoorCheckTest, MissingTokenIs401WithBearerChallengeAndOllamaError) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  const HeadVerdict verdict = proxy.Check(Head("POST /api/chat", {{"Content-Length", "20"}}));
  EXPECT_EQ(verdict.status, 401);
  EXPECT_EQ(verdict.ticket, nullptr);
  EXPECT_EQ(HeaderOf(verdict, "WWW-Authenticate"), "Bearer");
  EXPECT_EQ(HeaderOf(verdict, "Retry-After"), "");
  EXPECT_EQ(verdict.content_type, kJsonContentType);
  EXPECT_NE(OllamaError(verdict).find("Authorization: Bearer"), std::string::npos) << verdict.body;
  EXPECT_EQ(proxy.budget.used(), 0u) << "a refused body reserves nothing";
}

TEST(FrontDoorCheckTest, MissingTokenOnV1IsAnOpenAIErrorObject) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  const HeadVerdict verdict = proxy.Check(Head("POST /v1/chat/completions"));
  EXPECT_EQ(verdict.status, 401);
  EXPECT_EQ(HeaderOf(verdict, "WWW-Authenticate"), "Bearer");
  const auto body = nlohmann::json::parse(verdict.body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << verdict.body;
  ASSERT_TRUE(body["error"].is_object()) << verdict.body;
  EXPECT_TRUE(body["error"]["message"].is_string());
  EXPECT_TRUE(body["error"]["type"].is_string());
  EXPECT_TRUE(body["error"].contains("code"));
}

TEST(FrontDoorCheckTest, WrongTokenIs401) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  const HeadVerdict verdict =
      proxy.Check(Head("POST /api/chat", {{"Authorization", Bearer("not-a-token")}}));
  EXPECT_EQ(verdict.status, 401);
  EXPECT_EQ(HeaderOf(verdict, "WWW-Authenticate"), "Bearer");
}

TEST(FrontDoorCheckTest, TokenInAnotherSchemeIs401) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  for (const std::string& value :
       {"Basic " + std::string(kToken), std::string(kToken), std::string("Bearer "),
        "Bearer" + std::string(kToken), "Bearer " + std::string(kToken) + "x"}) {
    EXPECT_EQ(proxy.Check(Head("POST /api/chat", {{"Authorization", value}})).status, 401) << value;
  }
}

TEST(FrontDoorCheckTest, ValidTokenIsAdmittedAndTheTicketNamesIt) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  const HeadVerdict verdict =
      proxy.Check(Head("POST /api/chat", {{"Authorization", Bearer(kToken)}}));
  EXPECT_TRUE(IsAdmitted(verdict));
  const auto admitted = TicketOf(verdict);
  ASSERT_NE(admitted, nullptr);
  ASSERT_NE(admitted->token, nullptr);
  EXPECT_EQ(admitted->token->name(), "everything");
  EXPECT_EQ(admitted->token, &admitted->table->snapshot().tokens(0))
      << "the token points into the snapshot the ticket holds";
}

TEST(FrontDoorCheckTest, EachTokenIsFoundByItsOwnHash) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  const HeadVerdict verdict =
      proxy.Check(Head("POST /api/chat", {{"Authorization", Bearer(kLlamaToken)}}));
  EXPECT_TRUE(IsAdmitted(verdict));
  ASSERT_NE(TicketOf(verdict)->token, nullptr);
  EXPECT_EQ(TicketOf(verdict)->token->name(), "llama-only");
}

TEST(FrontDoorCheckTest, BearerSchemeIsCaseInsensitive) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  EXPECT_TRUE(IsAdmitted(
      proxy.Check(Head("POST /api/chat", {{"Authorization", "bearer " + std::string(kToken)}}))));
  EXPECT_TRUE(IsAdmitted(
      proxy.Check(Head("POST /api/chat", {{"Authorization", "BEARER " + std::string(kToken)}}))));
}

// The registry stores only lower-case hex, and the front door compares lower-case hex. A snapshot
// file written by hand (or by another tool) may carry upper case: it must be refused when
// applied, with a message, or its tokens must still match; never accepted and then lock every
// client out in silence.
TEST(FrontDoorCheckTest, UpperCaseStoredHashMatchesOrIsRefused) {
  Proxy proxy;
  corral::v1::Snapshot snapshot = OpenFleet();
  auto* token = snapshot.add_tokens();
  token->set_name("upper");
  std::string upper = corral::TokenSha256Hex(kToken);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  token->set_sha256_hex(upper);
  if (!proxy.store.Apply(snapshot, "test").ok()) return;  // refused: consistent
  const HeadVerdict verdict =
      proxy.Check(Head("POST /api/chat", {{"Authorization", Bearer(kToken)}}));
  EXPECT_EQ(verdict.status, 0) << "the snapshot was accepted with hash " << upper
                               << " but its token is refused: " << verdict.body;
}

TEST(FrontDoorCheckTest, ModelLimitedTokenMayNotManageModels) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  const std::string auth = Bearer(kLlamaToken);
  for (const std::string& line : {std::string("POST /api/pull"), std::string("POST /api/push"),
                                  std::string("POST /api/create"), std::string("POST /api/copy"),
                                  std::string("DELETE /api/delete"), "POST " + kBlob}) {
    const HeadVerdict verdict =
        proxy.Check(Head(line, {{"Authorization", auth}, {"Content-Length", "10"}}));
    EXPECT_EQ(verdict.status, 403) << line;
    EXPECT_EQ(verdict.ticket, nullptr) << line;
    EXPECT_NE(OllamaError(verdict).find("llama-only"), std::string::npos)
        << line << ": " << verdict.body;
  }
  EXPECT_EQ(proxy.door.active(), 0);
  EXPECT_EQ(proxy.budget.used(), 0u);
}

TEST(FrontDoorCheckTest, ModelLimitedTokenMayShowAndRunInference) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  const std::string auth = Bearer(kLlamaToken);
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("POST /api/show", {{"Authorization", auth}}))));
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("POST /api/chat", {{"Authorization", auth}}))));
  EXPECT_TRUE(
      IsAdmitted(proxy.Check(Head("POST /v1/chat/completions", {{"Authorization", auth}}))));
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("GET /v1/models/llama3", {{"Authorization", auth}}))));
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("GET /api/tags", {{"Authorization", auth}}))));
}

TEST(FrontDoorCheckTest, UnlimitedTokenMayManageModels) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("POST /api/pull", {{"Authorization", Bearer(kToken)}}))));
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("POST " + kBlob, {{"Authorization", Bearer(kToken)}}))));
}

TEST(FrontDoorCheckTest, LivenessIsOpenWithoutToken) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("GET /"))));
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("HEAD /"))));
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("GET /api/proxy"))));
}

TEST(FrontDoorCheckTest, FleetListsAndProxyStateNeedTheToken) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  for (const char* line : {"GET /api/tags", "GET /api/ps", "GET /api/version", "GET /v1/models",
                           "GET /api/proxy/state"}) {
    EXPECT_EQ(proxy.Check(Head(line)).status, 401) << line;
  }
}

// The seeds' health checks are liveness too: their users' monitors send no token.
TEST(FrontDoorCheckTest, TheSeedsHealthChecksAreOpenWithoutToken) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  for (const char* line :
       {"GET /api/health", "HEAD /api/health", "GET /__proxy/health", "HEAD /__proxy/health",
        "GET /health", "HEAD /health", "GET /api/proxy/"}) {
    EXPECT_TRUE(IsAdmitted(proxy.Check(Head(line)))) << line;
  }
}

// The seeds' views of the fleet are /api/proxy/state's kin; a route under the base URL is the
// route without it, for tokens and their model limits too.
TEST(FrontDoorCheckTest, SeedViewsAndRoutesUnderTheBaseUrlFollowTheRoutesTheyMirror) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  for (const char* line :
       {"GET /api/proxy/active-requests", "GET /__proxy/backends", "GET /api/proxy/tags",
        "GET /api/proxy/api/tags", "POST /api/proxy/chat", "POST /api/proxy/api/chat",
        "POST /api/proxy/v1/chat/completions", "POST /api/proxy/api/pull"}) {
    EXPECT_EQ(proxy.Check(Head(line)).status, 401) << line;
    EXPECT_TRUE(IsAdmitted(proxy.Check(Head(line, {{"Authorization", Bearer(kToken)}})))) << line;
  }
  const std::string limited = Bearer(kLlamaToken);
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("POST /api/proxy/chat", {{"Authorization", limited}}))));
  EXPECT_EQ(proxy.Check(Head("POST /api/proxy/api/pull", {{"Authorization", limited}})).status,
            403);
  // Refused in OpenAI's format under /api/proxy/v1, as under /v1.
  const auto body = nlohmann::json::parse(
      proxy.Check(Head("POST /api/proxy/v1/chat/completions")).body, nullptr, false);
  EXPECT_TRUE(body["error"].is_object()) << body;
}

// Issue 9: a blob upload never asked for a token, so anyone could write to every node's disk.
TEST(FrontDoorCheckTest, BlobUploadNeedsTheToken) {
  Proxy proxy;
  proxy.Serve(ClosedFleet());
  const HeadVerdict verdict = proxy.Check(Head("POST " + kBlob, {{"Content-Length", "1000"}}));
  EXPECT_EQ(verdict.status, 401);
  EXPECT_EQ(proxy.door.active(), 0);
  EXPECT_EQ(proxy.Check(Head("HEAD " + kBlob)).status, 401);
}

TEST(FrontDoorCheckTest, RequiredTokensWithNoneDefinedRefuseAndSaySo) {
  Proxy proxy;
  corral::v1::Snapshot snapshot = OpenFleet();
  snapshot.set_require_tokens(true);
  proxy.Serve(snapshot);
  const HeadVerdict verdict =
      proxy.Check(Head("POST /api/chat", {{"Authorization", Bearer(kToken)}}));
  EXPECT_EQ(verdict.status, 401);
  EXPECT_EQ(HeaderOf(verdict, "WWW-Authenticate"), "Bearer");
  EXPECT_NE(OllamaError(verdict).find("none defined"), std::string::npos) << verdict.body;
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("GET /"))));
}

TEST(FrontDoorCheckTest, FleetIsClosedByTokensOrByRequireTokens) {
  corral::v1::Snapshot open = OpenFleet();
  EXPECT_FALSE(FleetClosed(open));
  corral::v1::Snapshot required = OpenFleet();
  required.set_require_tokens(true);
  EXPECT_TRUE(FleetClosed(required));
  EXPECT_TRUE(FleetClosed(ClosedFleet()));
}

// ---------------------------------------------------------------------------------------------
// Check: admission against --max-streams

TEST(FrontDoorAdmissionTest, NoSnapshotYetIs503WithRetryAfter) {
  Proxy proxy;
  for (const char* line : {"POST /api/chat", "POST /v1/chat/completions", "POST /api/pull"}) {
    const HeadVerdict verdict = proxy.Check(Head(line, {{"Content-Length", "10"}}));
    EXPECT_EQ(verdict.status, 503) << line;
    EXPECT_EQ(HeaderOf(verdict, "Retry-After"), "1") << line;
    EXPECT_NE(verdict.body.find("no routing snapshot"), std::string::npos) << verdict.body;
  }
  EXPECT_EQ(proxy.door.active(), 0);
  EXPECT_EQ(proxy.budget.used(), 0u);
}

TEST(FrontDoorAdmissionTest, RequestWithoutBodyTakesItsSlotOnTheHead) {
  Proxy proxy(MaxStreams(1));
  proxy.Serve(OpenFleet());
  HeadVerdict verdict = proxy.Check(Head("GET /v1/models/llama3"));
  EXPECT_TRUE(IsAdmitted(verdict));
  EXPECT_NE(TicketOf(verdict)->slot, nullptr);
  EXPECT_EQ(proxy.door.active(), 1);
  verdict.ticket.reset();
  EXPECT_EQ(proxy.door.active(), 0) << "dropping the ticket frees the slot";
}

TEST(FrontDoorAdmissionTest, SlotOutlivesTheTicketWhileAStreamHoldsIt) {
  Proxy proxy(MaxStreams(1));
  proxy.Serve(OpenFleet());
  HeadVerdict verdict = proxy.Check(Head("HEAD " + kBlob));
  EXPECT_TRUE(IsAdmitted(verdict));
  std::shared_ptr<AdmissionSlot> relay = TicketOf(verdict)->slot;
  verdict.ticket.reset();
  EXPECT_EQ(proxy.door.active(), 1);
  relay.reset();
  EXPECT_EQ(proxy.door.active(), 0);
}

TEST(FrontDoorAdmissionTest, FullProxyRefusesTheNextRequestUntilASlotFrees) {
  Proxy proxy(MaxStreams(1));
  proxy.Serve(OpenFleet());
  HeadVerdict first = proxy.Check(Head("GET /v1/models/llama3"));
  ASSERT_EQ(first.status, 0);
  const HeadVerdict second = proxy.Check(Head("HEAD " + kBlob));
  EXPECT_EQ(second.status, 503);
  EXPECT_EQ(second.ticket, nullptr);
  EXPECT_EQ(HeaderOf(second, "Retry-After"), "1");
  EXPECT_EQ(OllamaError(second), AtLimitMessage(1));
  EXPECT_EQ(proxy.door.active(), 1) << "the refused request holds nothing";
  first.ticket.reset();
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("HEAD " + kBlob))));
}

TEST(FrontDoorAdmissionTest, BufferedBodyDoesNotTakeASlotOnTheHead) {
  Proxy proxy(MaxStreams(1));
  proxy.Serve(OpenFleet());
  const HeadVerdict verdict = proxy.Check(Head("POST /api/chat", {{"Content-Length", "100"}}));
  EXPECT_TRUE(IsAdmitted(verdict));
  EXPECT_EQ(TicketOf(verdict)->slot, nullptr);
  EXPECT_EQ(proxy.door.active(), 0);
  // So another request can still come in while that body is in transit.
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("POST /api/chat", {{"Transfer-Encoding", "chunked"}}))));
  EXPECT_EQ(proxy.door.active(), 0);
}

TEST(FrontDoorAdmissionTest, BufferedBodyIsRefusedOnTheHeadWhenTheProxyIsFull) {
  Proxy proxy(MaxStreams(1));
  proxy.Serve(OpenFleet());
  const HeadVerdict holder = proxy.Check(Head("GET /v1/models/llama3"));
  ASSERT_EQ(holder.status, 0);
  const HeadVerdict verdict = proxy.Check(Head("POST /api/chat", {{"Content-Length", "100"}}));
  EXPECT_EQ(verdict.status, 503);
  EXPECT_EQ(HeaderOf(verdict, "Retry-After"), "1");
  EXPECT_EQ(OllamaError(verdict), AtLimitMessage(1));
  EXPECT_EQ(proxy.door.active(), 1);
  EXPECT_EQ(proxy.budget.used(), 0u) << "no budget reserved for a refused body";
}

TEST(FrontDoorAdmissionTest, AtLimitOnV1IsAnOpenAIErrorObject) {
  Proxy proxy(MaxStreams(1));
  proxy.Serve(OpenFleet());
  const HeadVerdict holder = proxy.Check(Head("GET /v1/models/llama3"));
  ASSERT_EQ(holder.status, 0);
  const HeadVerdict verdict =
      proxy.Check(Head("POST /v1/chat/completions", {{"Content-Length", "100"}}));
  EXPECT_EQ(verdict.status, 503);
  const auto body = nlohmann::json::parse(verdict.body, nullptr, false);
  ASSERT_TRUE(body.is_object() && body["error"].is_object()) << verdict.body;
  EXPECT_EQ(body["error"]["message"], AtLimitMessage(1));
}

TEST(FrontDoorAdmissionTest, TakeSlotTakesItOnceTheBodyHasArrived) {
  Proxy proxy(MaxStreams(1));
  proxy.Serve(OpenFleet());
  HeadVerdict verdict = proxy.Check(Head("POST /api/chat", {{"Content-Length", "100"}}));
  ASSERT_EQ(verdict.status, 0);
  Admitted& admitted = *TicketOf(verdict);
  EXPECT_TRUE(proxy.door.TakeSlot(admitted));
  EXPECT_NE(admitted.slot, nullptr);
  EXPECT_EQ(proxy.door.active(), 1);
  EXPECT_TRUE(proxy.door.TakeSlot(admitted)) << "a request holding its slot keeps it";
  EXPECT_EQ(proxy.door.active(), 1) << "and takes no second one";
  verdict.ticket.reset();
  EXPECT_EQ(proxy.door.active(), 0);
}

TEST(FrontDoorAdmissionTest, TakeSlotFailsAndHoldsNothingWhenTheProxyFilledMeanwhile) {
  Proxy proxy(MaxStreams(1));
  proxy.Serve(OpenFleet());
  HeadVerdict buffered = proxy.Check(Head("POST /api/chat", {{"Content-Length", "100"}}));
  ASSERT_EQ(buffered.status, 0);
  const HeadVerdict holder = proxy.Check(Head("GET /v1/models/llama3"));
  ASSERT_EQ(holder.status, 0);
  Admitted& admitted = *TicketOf(buffered);
  EXPECT_FALSE(proxy.door.TakeSlot(admitted));
  EXPECT_EQ(admitted.slot, nullptr);
  EXPECT_EQ(proxy.door.active(), 1) << "only the holder counts";
}

// Requests racing for three slots, half taking theirs on the head and half once their body has
// arrived: never more than three hold one at once, and every slot comes back.
TEST(FrontDoorAdmissionTest, ConcurrentRequestsNeverHoldMoreThanMaxStreams) {
  constexpr int64_t kMaxStreams = 3;
  constexpr int kThreads = 6;
  constexpr int kRequests = 2000;
  Proxy proxy(MaxStreams(kMaxStreams));
  proxy.Serve(OpenFleet());
  const RequestHead on_head = Head("GET /v1/models/llama3");
  const RequestHead with_body = Head("POST /api/chat", {{"Content-Length", "100"}});
  std::atomic<int> ready{0};
  std::atomic<int64_t> holding{0};
  std::atomic<int64_t> most_held{0};
  std::atomic<int64_t> served{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();
      for (int i = 0; i < kRequests; ++i) {
        HeadVerdict verdict = proxy.Check(t % 2 == 0 ? on_head : with_body);
        if (verdict.status != 0) continue;
        const auto admitted = TicketOf(verdict);
        if (admitted->slot == nullptr && !proxy.door.TakeSlot(*admitted)) continue;
        const int64_t now = holding.fetch_add(1) + 1;
        int64_t seen = most_held.load();
        while (now > seen && !most_held.compare_exchange_weak(seen, now)) {
        }
        served.fetch_add(1);
        holding.fetch_sub(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(most_held.load(), kMaxStreams);
  EXPECT_GT(served.load(), 0);
  EXPECT_EQ(proxy.door.active(), 0);
  EXPECT_EQ(proxy.budget.used(), 0u);
}

TEST(FrontDoorAdmissionTest, BlobUploadTakesItsSlotOnTheHead) {
  Proxy proxy(MaxStreams(1));
  proxy.Serve(OpenFleet());
  const HeadVerdict upload = proxy.Check(Head("POST " + kBlob, {{"Content-Length", "1000"}}));
  EXPECT_TRUE(IsAdmitted(upload));
  EXPECT_NE(TicketOf(upload)->slot, nullptr) << "a blob is streamed to its node, not buffered";
  EXPECT_EQ(proxy.door.active(), 1);
}

TEST(FrontDoorAdmissionTest, RequestsThatGoToNodesAreListedAmongThoseInFlight) {
  Proxy proxy;
  proxy.Serve(OpenFleet());
  const HeadVerdict chat = proxy.Check(Head("POST /api/proxy/api/chat", {{"X-Request-Id", "c1"}}));
  ASSERT_TRUE(IsAdmitted(chat));
  const HeadVerdict tags = proxy.Check(Head("GET /api/tags"));
  ASSERT_TRUE(IsAdmitted(tags));
  const HeadVerdict refused = proxy.Check(
      Head("POST /api/chat", {{"Content-Length", "1"}, {"Origin", "http://evil.test"}}));
  ASSERT_EQ(refused.status, 403);
  const std::vector<LiveRequests::Row> rows = proxy.door.live().List();
  ASSERT_EQ(rows.size(), 1u) << "fleet lists and refusals are not listed";
  EXPECT_EQ(rows[0].request_id, "c1");
  EXPECT_EQ(rows[0].route, "chat");
  EXPECT_EQ(rows[0].client, "127.0.0.1");
  TicketOf(chat)->record->Finish(200, RequestOutcome::kAnswered);
  EXPECT_TRUE(proxy.door.live().List().empty()) << "a finished request is not in flight";
}

TEST(FrontDoorAdmissionTest, FleetListsAndProxyEndpointsTakeNoSlot) {
  Proxy proxy(MaxStreams(1));
  proxy.Serve(OpenFleet());
  const HeadVerdict holder = proxy.Check(Head("GET /v1/models/llama3"));
  ASSERT_EQ(holder.status, 0);
  for (const char* line : {"GET /", "GET /api/tags", "GET /api/ps", "GET /api/proxy/state",
                           "GET /api/proxy/active-requests", "GET /__proxy/backends", "GET /health",
                           "GET /api/proxy/tags"}) {
    const HeadVerdict verdict = proxy.Check(Head(line));
    EXPECT_TRUE(IsAdmitted(verdict));
    EXPECT_EQ(TicketOf(verdict)->slot, nullptr) << line;
  }
  EXPECT_EQ(proxy.door.active(), 1);
}

// ---------------------------------------------------------------------------------------------
// Check: the body's size and the body budget

constexpr uint64_t kMiB = uint64_t{1} << 20;

TEST(FrontDoorBodyTest, BodyOverTheLimitByMoreThanTheDrainIs413) {
  Proxy proxy(MaxBody(kMiB));
  proxy.Serve(OpenFleet());
  const std::string length = std::to_string(kMiB + kMaxDrainBytes + 1);
  const HeadVerdict verdict = proxy.Check(Head("POST /api/chat", {{"Content-Length", length}}));
  EXPECT_EQ(verdict.status, 413);
  EXPECT_EQ(verdict.ticket, nullptr);
  EXPECT_NE(OllamaError(verdict).find("1 MiB"), std::string::npos) << verdict.body;
  EXPECT_EQ(proxy.budget.used(), 0u);
}

TEST(FrontDoorBodyTest, BodyOverTheLimitByAtMostTheDrainIsReadAndDropped) {
  Proxy proxy(MaxBody(kMiB));
  proxy.Serve(OpenFleet());
  for (const uint64_t over : {uint64_t{1}, kMaxDrainBytes}) {
    const HeadVerdict verdict =
        proxy.Check(Head("POST /api/chat", {{"Content-Length", std::to_string(kMiB + over)}}));
    EXPECT_TRUE(IsAdmitted(verdict));
    EXPECT_TRUE(TicketOf(verdict)->drain_body) << over;
    EXPECT_EQ(proxy.budget.used(), 0u) << "a drained body is dropped, not held";
  }
}

TEST(FrontDoorBodyTest, BodyAtTheLimitIsAdmitted) {
  Proxy proxy(MaxBody(kMiB));
  proxy.Serve(OpenFleet());
  const HeadVerdict verdict =
      proxy.Check(Head("POST /api/chat", {{"Content-Length", std::to_string(kMiB)}}));
  EXPECT_TRUE(IsAdmitted(verdict));
  EXPECT_FALSE(TicketOf(verdict)->drain_body);
}

TEST(FrontDoorBodyTest, ExpectContinueOverTheLimitIs413) {
  Proxy proxy(MaxBody(kMiB));
  proxy.Serve(OpenFleet());
  const HeadVerdict verdict =
      proxy.Check(Head("POST /api/chat",
                       {{"Content-Length", std::to_string(kMiB + 1)}, {"Expect", "100-continue"}}));
  EXPECT_EQ(verdict.status, 413) << "nothing was sent yet: no need to read it";
}

TEST(FrontDoorBodyTest, OverTheLimitOnV1IsAnOpenAIErrorObject) {
  Proxy proxy(MaxBody(kMiB));
  proxy.Serve(OpenFleet());
  const HeadVerdict verdict = proxy.Check(
      Head("POST /v1/embeddings", {{"Content-Length", std::to_string(kMiB + kMaxDrainBytes + 1)}}));
  EXPECT_EQ(verdict.status, 413);
  const auto body = nlohmann::json::parse(verdict.body, nullptr, false);
  ASSERT_TRUE(body.is_object() && body["error"].is_object()) << verdict.body;
}

TEST(FrontDoorBodyTest, AnnouncedLengthIsReservedUntilTheTicketIsDropped) {
  Proxy proxy(MaxBody(kMiB), /*budget_bytes=*/10000);
  proxy.Serve(OpenFleet());
  HeadVerdict verdict = proxy.Check(Head("POST /api/chat", {{"Content-Length", "4000"}}));
  EXPECT_TRUE(IsAdmitted(verdict));
  EXPECT_EQ(TicketOf(verdict)->body.bytes(), 4000u);
  EXPECT_EQ(proxy.budget.used(), 4000u);
  verdict.ticket.reset();
  EXPECT_EQ(proxy.budget.used(), 0u);
}

TEST(FrontDoorBodyTest, BodyPastTheBudgetIs503WithRetryAfter) {
  Proxy proxy(MaxBody(kMiB), /*budget_bytes=*/10000);
  proxy.Serve(OpenFleet());
  const HeadVerdict first = proxy.Check(Head("POST /api/chat", {{"Content-Length", "6000"}}));
  ASSERT_EQ(first.status, 0);
  const HeadVerdict second = proxy.Check(Head("POST /api/chat", {{"Content-Length", "6000"}}));
  EXPECT_EQ(second.status, 503);
  EXPECT_EQ(second.ticket, nullptr);
  EXPECT_EQ(HeaderOf(second, "Retry-After"), "1");
  EXPECT_NE(OllamaError(second).find("memory budget"), std::string::npos) << second.body;
  EXPECT_EQ(proxy.budget.used(), 6000u);
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("POST /api/chat", {{"Content-Length", "4000"}}))))
      << "what is left of the budget is still there";
}

// No retry could find room for a body larger than the whole budget: it is refused for good.
TEST(FrontDoorBodyTest, BodyLargerThanTheWholeBudgetIs413) {
  Proxy proxy(MaxBody(kMiB), /*budget_bytes=*/10000);
  proxy.Serve(OpenFleet());
  const HeadVerdict verdict = proxy.Check(Head("POST /api/chat", {{"Content-Length", "10001"}}));
  EXPECT_EQ(verdict.status, 413);
  EXPECT_EQ(HeaderOf(verdict, "Retry-After"), "");
  EXPECT_NE(OllamaError(verdict).find("whole budget"), std::string::npos) << verdict.body;
  EXPECT_EQ(proxy.budget.used(), 0u);
}

TEST(FrontDoorBodyTest, BlobUploadReservesNothing) {
  Proxy proxy(MaxBody(kMiB), /*budget_bytes=*/10000);
  proxy.Serve(OpenFleet());
  const std::string huge = std::to_string(kMiB + kMaxDrainBytes + 1);
  const HeadVerdict verdict = proxy.Check(Head("POST " + kBlob, {{"Content-Length", huge}}));
  // A blob is streamed to its node: neither the size limit nor the budget applies.
  EXPECT_TRUE(IsAdmitted(verdict));
  EXPECT_FALSE(TicketOf(verdict)->drain_body);
  EXPECT_EQ(proxy.budget.used(), 0u);
}

TEST(FrontDoorBodyTest, ChunkedBodyReservesNothingOnTheHeadAndGrowsAsItArrives) {
  Proxy proxy(MaxBody(kMiB), /*budget_bytes=*/10000);
  proxy.Serve(OpenFleet());
  HeadVerdict verdict = proxy.Check(Head("POST /api/chat", {{"Transfer-Encoding", "chunked"}}));
  EXPECT_TRUE(IsAdmitted(verdict));
  EXPECT_EQ(proxy.budget.used(), 0u);
  Admitted& admitted = *TicketOf(verdict);
  EXPECT_TRUE(admitted.body.Grow(3000)) << "the ticket's reservation draws on the proxy's budget";
  EXPECT_EQ(proxy.budget.used(), 3000u);
  EXPECT_FALSE(admitted.body.Grow(7001));
  verdict.ticket.reset();
  EXPECT_EQ(proxy.budget.used(), 0u);
}

TEST(FrontDoorBodyTest, RequestWithoutBodyReservesNothing) {
  Proxy proxy(MaxBody(kMiB), /*budget_bytes=*/10000);
  proxy.Serve(OpenFleet());
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("POST /api/chat", {{"Content-Length", "0"}}))));
  EXPECT_TRUE(IsAdmitted(proxy.Check(Head("GET /api/tags"))));
  EXPECT_EQ(proxy.budget.used(), 0u);
}

}  // namespace
}  // namespace corral::dataplane
