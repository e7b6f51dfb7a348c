// SlotAllocator: shares follow demand, the sum of what proxies may use never exceeds a limit,
// leases, proxies joining and leaving, node-wide and per-model limits.
#include "controlplane/slot_allocator.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace corral::control {
namespace {

using corral::v1::NodeLoad;
using corral::v1::ReportResponse;
using Loads = google::protobuf::RepeatedPtrField<NodeLoad>;

constexpr char kNode[] = "gpu1";
constexpr char kModel[] = "llama3:latest";

LimitTable OneNode(int64_t max_parallel, int64_t num_parallel) {
  LimitTable limits;
  limits[kNode] = NodeLimits{max_parallel, num_parallel};
  return limits;
}

// A proxy as the allocator sees it: numbers its Reports, applies answers, acknowledges them.
struct FakeProxy {
  FakeProxy(const char* name = "") : id(name) {}
  std::string id;
  uint64_t seq = 0;
  uint64_t applied = 0;
  std::optional<ReportResponse> enforced;  // the answer applied last
  TimePoint applied_at{};

  ReportResponse Report(SlotAllocator& allocator, const LimitTable& limits, int64_t in_flight,
                        int64_t waiting, int64_t model_in_flight = -1, int64_t model_waiting = -1) {
    Loads loads;
    NodeLoad* load = loads.Add();
    load->set_node(kNode);
    load->set_in_flight(in_flight);
    load->set_waiting(waiting);
    corral::v1::ModelLoad* model = load->add_models();
    model->set_model(kModel);
    model->set_in_flight(model_in_flight >= 0 ? model_in_flight : in_flight);
    model->set_waiting(model_waiting >= 0 ? model_waiting : waiting);
    ReportResponse response;
    allocator.Report(id, ++seq, applied, loads, limits, &response);
    return response;
  }
  void Apply(const ReportResponse& response, TimePoint now) {
    enforced = response;
    applied = seq;
    applied_at = now;
  }
  // Report and apply the answer at once (no loss, no delay).
  ReportResponse Exchange(SlotAllocator& allocator, const LimitTable& limits, TimePoint now,
                          int64_t in_flight, int64_t waiting) {
    ReportResponse r = Report(allocator, limits, in_flight, waiting);
    Apply(r, now);
    return r;
  }
};

int64_t NodeGrant(const ReportResponse& r) {
  for (const auto& g : r.grants()) {
    if (g.node() == kNode) return g.max_parallel();
  }
  return -1;
}

int64_t ModelGrant(const ReportResponse& r, const std::string& model = kModel) {
  for (const auto& g : r.grants()) {
    if (g.node() != kNode) continue;
    for (const auto& m : g.models()) {
      if (m.model() == model) return m.num_parallel();
    }
    return g.default_model_slots();
  }
  return -1;
}

TEST(SlotAllocatorTest, OneProxyGetsTheWholeLimit) {
  ManualClock clock;
  SlotAllocator allocator(clock);
  const LimitTable limits = OneNode(4, 2);
  FakeProxy p{"a"};
  allocator.Connected("a");
  const ReportResponse r = p.Exchange(allocator, limits, clock.Now(), 0, 0);
  EXPECT_EQ(NodeGrant(r), 4);
  EXPECT_EQ(ModelGrant(r), 2);
  EXPECT_EQ(r.proxies(), 1);
  EXPECT_EQ(r.lease_ms(), 3000);
}

TEST(SlotAllocatorTest, IdleCapacityIsSplitAsFloorsRemainderInIdOrder) {
  ManualClock clock;
  SlotAllocator allocator(clock);
  const LimitTable limits = OneNode(4, 1);
  std::vector<FakeProxy> proxies = {{"a"}, {"b"}, {"c"}};
  for (auto& p : proxies) allocator.Connected(p.id);
  // Two rounds: the first answers only what the others' "whole" start leaves; once everyone has
  // acknowledged an answer the floors are final.
  for (int round = 0; round < 2; ++round) {
    for (auto& p : proxies) p.Exchange(allocator, limits, clock.Now(), 0, 0);
  }
  std::vector<int64_t> node, model;
  for (auto& p : proxies) {
    const ReportResponse r = p.Exchange(allocator, limits, clock.Now(), 0, 0);
    node.push_back(NodeGrant(r));
    model.push_back(ModelGrant(r));
  }
  EXPECT_EQ(node, (std::vector<int64_t>{2, 1, 1}));
  // One slot per model among three proxies: only the first holds it; the others ask first.
  EXPECT_EQ(model, (std::vector<int64_t>{1, 0, 0}));
  EXPECT_LE(allocator.HeldTotal(kNode, "", limits), 4);
  EXPECT_LE(allocator.HeldTotal(kNode, kModel, limits), 1);
}

TEST(SlotAllocatorTest, DemandMovesToTheBusyProxyOnceTheOthersAcknowledge) {
  ManualClock clock;
  SlotAllocator allocator(clock);
  const LimitTable limits = OneNode(4, 4);
  FakeProxy a{"a"}, b{"b"}, c{"c"};
  for (const char* id : {"a", "b", "c"}) allocator.Connected(id);
  for (int round = 0; round < 3; ++round) {
    for (FakeProxy* p : {&a, &b, &c}) p->Exchange(allocator, limits, clock.Now(), 0, 0);
  }
  // b fills its floor and queues ten more: it gets what a and c do not hold.
  int64_t b_grant = NodeGrant(b.Exchange(allocator, limits, clock.Now(), 1, 10));
  EXPECT_EQ(b_grant, 1);  // a holds 2, c 1 until they hear otherwise
  // a and c report (idle): their grants drop to 0, but count until acknowledged.
  EXPECT_EQ(NodeGrant(a.Exchange(allocator, limits, clock.Now(), 0, 0)), 0);
  EXPECT_EQ(NodeGrant(c.Exchange(allocator, limits, clock.Now(), 0, 0)), 0);
  EXPECT_EQ(NodeGrant(b.Exchange(allocator, limits, clock.Now(), 1, 10)), 1);
  // The acknowledgements (their next Reports, with the lowered grant applied).
  a.Exchange(allocator, limits, clock.Now(), 0, 0);
  c.Exchange(allocator, limits, clock.Now(), 0, 0);
  EXPECT_EQ(NodeGrant(b.Exchange(allocator, limits, clock.Now(), 1, 10)), 4);
  EXPECT_EQ(allocator.HeldTotal(kNode, "", limits), 4);

  // Demand shifts: a queues two. a asks; b keeps its four until it reports with less.
  EXPECT_EQ(NodeGrant(a.Exchange(allocator, limits, clock.Now(), 0, 2)), 0);
  // b's share is now max-min fair: a wants 2, b wants 14, four slots: 2 and 2.
  EXPECT_EQ(NodeGrant(b.Exchange(allocator, limits, clock.Now(), 4, 10)), 2);
  // b still runs four (started under the larger grant): they count until they finish.
  EXPECT_EQ(NodeGrant(a.Exchange(allocator, limits, clock.Now(), 0, 2)), 0);
  b.Exchange(allocator, limits, clock.Now(), 2, 12);  // two finished; b acknowledged 2
  EXPECT_EQ(NodeGrant(a.Exchange(allocator, limits, clock.Now(), 0, 2)), 2);
  EXPECT_LE(allocator.HeldTotal(kNode, "", limits), 4);
}

TEST(SlotAllocatorTest, ALostAnswerIsNotTakenAsAcknowledged) {
  ManualClock clock;
  SlotAllocator allocator(clock);
  const LimitTable limits = OneNode(4, 4);
  FakeProxy a{"a"}, b{"b"};
  allocator.Connected("a");
  allocator.Connected("b");
  for (int round = 0; round < 3; ++round) {
    a.Exchange(allocator, limits, clock.Now(), 0, 0);
    b.Exchange(allocator, limits, clock.Now(), 0, 0);
  }
  // a holds 2. b gets busy; a's answer lowering it to 0 is lost on the way.
  b.Exchange(allocator, limits, clock.Now(), 2, 6);
  a.Report(allocator, limits, 0, 0);  // not applied
  a.Report(allocator, limits, 0, 0);  // acknowledges the answer before the lost one, not it
  EXPECT_EQ(NodeGrant(b.Exchange(allocator, limits, clock.Now(), 2, 6)), 2);
  EXPECT_EQ(allocator.HeldTotal(kNode, "", limits), 4);
}

TEST(SlotAllocatorTest, LeaseExpiryCountsTheEqualSplitAndADisconnectedProxyLeaves) {
  ManualClock clock;
  SlotAllocator allocator(clock);
  const LimitTable limits = OneNode(6, 1);
  FakeProxy a{"a"}, b{"b"}, c{"c"};
  for (const char* id : {"a", "b", "c"}) allocator.Connected(id);
  for (int round = 0; round < 3; ++round) {
    a.Exchange(allocator, limits, clock.Now(), 0, 0);
    b.Exchange(allocator, limits, clock.Now(), 0, 0);
    c.Exchange(allocator, limits, clock.Now(), 6, 20);
  }
  // c has everything; a and b hold 0.
  EXPECT_EQ(NodeGrant(c.Exchange(allocator, limits, clock.Now(), 6, 20)), 6);
  // a goes silent. Half a lease on, it may be cut off and about to fall back to the equal
  // split (6 / 3 = 2): that is counted from now, so c gives back two before a can use them.
  clock.Advance(std::chrono::milliseconds(1600));
  b.Exchange(allocator, limits, clock.Now(), 0, 0);
  b.Exchange(allocator, limits, clock.Now(), 0, 0);
  EXPECT_EQ(NodeGrant(c.Exchange(allocator, limits, clock.Now(), 6, 20)), 4);
  EXPECT_EQ(allocator.HeldTotal(kNode, "", limits), 8);  // c's six run until they finish
  c.Exchange(allocator, limits, clock.Now(), 4, 22);     // two finished: acknowledged
  EXPECT_EQ(allocator.HeldTotal(kNode, "", limits), 6);
  // a's stream ends: once its lease is over it leaves, and c may have everything again.
  allocator.Disconnected("a");
  EXPECT_EQ(allocator.proxies(), 3);  // its lease still runs
  clock.Advance(std::chrono::milliseconds(2500));
  allocator.Disconnected("a");
  EXPECT_EQ(allocator.proxies(), 2);
  b.Exchange(allocator, limits, clock.Now(), 0, 0);
  b.Exchange(allocator, limits, clock.Now(), 0, 0);
  c.Exchange(allocator, limits, clock.Now(), 4, 22);
  EXPECT_EQ(NodeGrant(c.Exchange(allocator, limits, clock.Now(), 4, 22)), 6);
  EXPECT_EQ(c.enforced->proxies(), 2);
}

TEST(SlotAllocatorTest, AJoiningProxyCountsAsWholeUntilItsFirstAnswer) {
  ManualClock clock;
  SlotAllocator allocator(clock);
  const LimitTable limits = OneNode(4, 1);
  FakeProxy a{"a"}, b{"b"};
  allocator.Connected("a");
  a.Exchange(allocator, limits, clock.Now(), 1, 5);
  EXPECT_EQ(NodeGrant(a.Exchange(allocator, limits, clock.Now(), 1, 5)), 4);
  // b connects: before its first answer it uses every limit whole, so a's grant may not grow
  // (it keeps what it holds) and a lowered one is not given back.
  allocator.Connected("b");
  EXPECT_EQ(NodeGrant(a.Exchange(allocator, limits, clock.Now(), 4, 2)), 0);
  b.Exchange(allocator, limits, clock.Now(), 0, 1);  // b's first answer, applied
  b.Exchange(allocator, limits, clock.Now(), 0, 1);  // acknowledged
  a.Exchange(allocator, limits, clock.Now(), 3, 2);
  a.Exchange(allocator, limits, clock.Now(), 3, 2);
  // Fair shares now: b wants 1, a wants 5 of 4.
  EXPECT_EQ(NodeGrant(a.Exchange(allocator, limits, clock.Now(), 3, 2)), 3);
  EXPECT_EQ(NodeGrant(b.Exchange(allocator, limits, clock.Now(), 0, 1)), 1);
  EXPECT_LE(allocator.HeldTotal(kNode, "", limits), 4);
}

TEST(SlotAllocatorTest, ARestartedProxyStartsAfresh) {
  ManualClock clock;
  SlotAllocator allocator(clock);
  const LimitTable limits = OneNode(4, 1);
  FakeProxy a{"a"};
  allocator.Connected("a");
  a.Exchange(allocator, limits, clock.Now(), 2, 0);
  a.Exchange(allocator, limits, clock.Now(), 2, 0);
  FakeProxy again{"a"};  // numbering from 1 again
  again.Exchange(allocator, limits, clock.Now(), 0, 0);
  EXPECT_EQ(allocator.proxies(), 1);
  EXPECT_EQ(allocator.HeldTotal(kNode, "", limits), 4);  // whole until it acknowledges
  again.Exchange(allocator, limits, clock.Now(), 0, 0);
  EXPECT_EQ(allocator.HeldTotal(kNode, "", limits), 4);  // its own floor: the whole limit
}

TEST(SlotAllocatorTest, AProxyThatAppliesNoGrantsTakesNoPart) {
  ManualClock clock;
  SlotAllocator allocator(clock);
  const LimitTable limits = OneNode(4, 1);
  FakeProxy a{"a"};
  allocator.Connected("a");
  allocator.Connected("old");
  Loads none;
  ReportResponse old_answer;
  allocator.Report("old", /*report_seq=*/0, 0, none, limits, &old_answer);
  EXPECT_EQ(old_answer.grants_size(), 0);
  EXPECT_EQ(old_answer.lease_ms(), 0);
  a.Exchange(allocator, limits, clock.Now(), 0, 3);
  EXPECT_EQ(NodeGrant(a.Exchange(allocator, limits, clock.Now(), 0, 3)), 4);
  EXPECT_EQ(a.enforced->proxies(), 1);
}

TEST(SlotAllocatorTest, PerModelLimitsAreSharedSeparatelyFromTheNodeLimit) {
  ManualClock clock;
  SlotAllocator allocator(clock);
  const LimitTable limits = OneNode(0, 2);  // no node-wide limit, two slots per model
  FakeProxy a{"a"}, b{"b"};
  allocator.Connected("a");
  allocator.Connected("b");
  for (int round = 0; round < 3; ++round) {
    a.Exchange(allocator, limits, clock.Now(), 0, 0);
    b.Exchange(allocator, limits, clock.Now(), 0, 0);
  }
  // b asks for three of kModel: it gets a's floor once a acknowledges.
  ReportResponse r = b.Report(allocator, limits, 1, 2, 1, 2);
  b.Apply(r, clock.Now());
  EXPECT_EQ(NodeGrant(r), 0);  // no node-wide limit: nothing to divide
  EXPECT_EQ(ModelGrant(r), 1);
  a.Exchange(allocator, limits, clock.Now(), 0, 0);
  a.Exchange(allocator, limits, clock.Now(), 0, 0);
  r = b.Report(allocator, limits, 1, 2, 1, 2);
  EXPECT_EQ(ModelGrant(r), 2);
  // Another model nobody asks for keeps its floors: one each.
  EXPECT_EQ(ModelGrant(r, "other:latest"), 1);
  EXPECT_LE(allocator.HeldTotal(kNode, kModel, limits), 2);
  EXPECT_LE(allocator.HeldTotal(kNode, "other:latest", limits), 2);
}

// The bound under a random mix of demand, lost and late answers, silence and time: the
// requests the proxies actually run on the node never exceed its limit, and neither does the
// allocator's own count, once every proxy applied its first answer.
TEST(SlotAllocatorTest, RandomisedReportsNeverExceedTheLimit) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    ManualClock clock;
    SlotAllocatorOptions options;
    SlotAllocator allocator(clock, options);
    std::mt19937_64 rng(seed);
    const int64_t limit = 1 + static_cast<int64_t>(rng() % 8);
    const LimitTable limits = OneNode(limit, limit);
    struct Sim {
      FakeProxy p;
      int64_t in_flight = 0;
      int64_t waiting = 0;
      std::optional<std::pair<ReportResponse, TimePoint>> pending;  // answer on its way
    };
    std::vector<Sim> sims(2 + rng() % 4);
    for (size_t i = 0; i < sims.size(); ++i) {
      sims[i].p.id = "p" + std::to_string(i);
      allocator.Connected(sims[i].p.id);
    }
    // Warm-up: every proxy applies one answer before it runs anything.
    for (int round = 0; round < 2; ++round) {
      for (Sim& s : sims) s.p.Exchange(allocator, limits, clock.Now(), 0, 0);
    }
    auto enforced = [&](const Sim& s) -> int64_t {
      const ReportResponse& r = *s.p.enforced;
      if (clock.Now() > s.p.applied_at + std::chrono::milliseconds(r.lease_ms())) {
        return FallbackSlots(limit, r.proxies());
      }
      return std::min<int64_t>(NodeGrant(r), limit);
    };
    int64_t admitted = 0;
    auto admit = [&](Sim& s) {
      while (s.waiting > 0 && s.in_flight < enforced(s)) {
        --s.waiting;
        ++s.in_flight;
        ++admitted;
      }
    };
    for (int step = 0; step < 3000; ++step) {
      Sim& s = sims[rng() % sims.size()];
      switch (rng() % 7) {
        case 0:
        case 1:
          s.waiting += 1 + static_cast<int64_t>(rng() % 3);
          break;
        case 2:
          if (s.in_flight > 0) --s.in_flight;
          break;
        case 3:  // Report (one at a time per proxy, as the client sends them)
          if (!s.pending) {
            s.pending.emplace(s.p.Report(allocator, limits, s.in_flight, s.waiting), clock.Now());
          }
          break;
        case 4:  // the answer arrives; past the margin the client drops it
          if (s.pending) {
            if (clock.Now() - s.pending->second <= options.lease_margin) {
              s.p.Apply(s.pending->first, clock.Now());
            }
            s.pending.reset();
          }
          break;
        case 5:  // lost
          if (rng() % 4 == 0) s.pending.reset();
          break;
        case 6:
          // Connected proxies report at least every half second (ControlClient): one whose
          // last answer is a second old reports now, before time moves on.
          for (Sim& t : sims) {
            if (clock.Now() - t.p.applied_at >= std::chrono::milliseconds(1000)) {
              t.pending.reset();
              t.p.Exchange(allocator, limits, clock.Now(), t.in_flight, t.waiting);
            }
          }
          clock.Advance(std::chrono::milliseconds(rng() % 700));
          break;
      }
      for (Sim& t : sims) admit(t);
      int64_t running = 0;
      for (const Sim& t : sims) running += t.in_flight;
      ASSERT_LE(running, limit) << "seed " << seed << " step " << step;
      // The allocator's count never undercounts what runs.
      ASSERT_LE(running, allocator.HeldTotal(kNode, "", limits))
          << "seed " << seed << " step " << step;
    }
    EXPECT_GT(admitted, 5) << "seed " << seed << " limit " << limit << " proxies " << sims.size()
                           << ": the limit was shared, not starved";
  }
}

// A proxy cut off from the control plane falls back to the equal split at the end of its
// lease: the allocator counts that split from half a lease on, so the others give it back first.
TEST(SlotAllocatorTest, ASilentProxysFallbackIsReservedBeforeItsLeaseEnds) {
  ManualClock clock;
  SlotAllocator allocator(clock);
  const LimitTable limits = OneNode(4, 4);
  FakeProxy a{"a"}, b{"b"};
  allocator.Connected("a");
  allocator.Connected("b");
  for (int round = 0; round < 3; ++round) {
    a.Exchange(allocator, limits, clock.Now(), 0, 0);
    b.Exchange(allocator, limits, clock.Now(), 4, 10);
  }
  EXPECT_EQ(NodeGrant(*b.enforced), 4);
  for (int i = 0; i < 5; ++i) {  // b reports every 500 ms, its requests short; a is silent
    clock.Advance(std::chrono::milliseconds(500));
    b.Exchange(allocator, limits, clock.Now(), std::min<int64_t>(4, NodeGrant(*b.enforced)), 10);
  }
  // 2.5 s on: a may fall back to 4 / 2 = 2 at 3 s; b already runs at most 2.
  EXPECT_EQ(NodeGrant(*b.enforced), 2);
  EXPECT_LE(allocator.HeldTotal(kNode, "", limits), 4);
}

TEST(SlotAllocatorTest, FallbackSplitsEquallyWithAtLeastOneSlot) {
  EXPECT_EQ(FallbackSlots(0, 3), 0);
  EXPECT_EQ(FallbackSlots(4, 3), 1);
  EXPECT_EQ(FallbackSlots(8, 3), 2);
  EXPECT_EQ(FallbackSlots(2, 3), 1);
  EXPECT_EQ(FallbackSlots(5, 0), 5);
}

}  // namespace
}  // namespace corral::control
