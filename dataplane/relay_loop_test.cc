// RelayLoop carrying answers between real socket pairs: a scripted node on one, a client on the
// other.
#include "dataplane/relay_loop.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace corral::dataplane {
namespace {

using std::chrono::milliseconds;
using End = RelayLoop::End;

constexpr milliseconds kDeadline(5000);

void Send(int fd, const std::string& text) {
  size_t off = 0;
  while (off < text.size()) {
    const ssize_t n = ::send(fd, text.data() + off, text.size() - off, MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    off += static_cast<size_t>(n);
  }
}

std::string Chunk(const std::string& data) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return size + data + "\r\n";
}

// The payload of complete chunks in `framed`; false when the framing is broken. `ended`: the
// last chunk was seen.
bool Unchunk(const std::string& framed, std::string* payload, bool* ended) {
  payload->clear();
  *ended = false;
  size_t pos = 0;
  while (true) {
    const size_t eol = framed.find("\r\n", pos);
    if (eol == std::string::npos) return true;
    const size_t size = std::stoul(framed.substr(pos, eol - pos), nullptr, 16);
    if (size == 0) {
      *ended = true;
      return true;
    }
    if (framed.size() < eol + 2 + size + 2) return true;
    if (framed.compare(eol + 2 + size, 2, "\r\n") != 0) return false;
    payload->append(framed, eol + 2, size);
    pos = eol + 2 + size + 2;
  }
}

// One stream's two socket pairs: the proxy's ends go to the loop, the test plays the node and
// the client on the others.
struct Streamed {
  Streamed() {
    int node_pair[2];
    int client_pair[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, node_pair), 0);
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, client_pair), 0);
    node = std::make_unique<UpstreamConnection>(node_pair[0]);
    node_end = node_pair[1];
    client_fd = client_pair[0];
    client_end = client_pair[1];
    node->BeginResponse(false);
    Send(node_end,
         "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
         "Transfer-Encoding: chunked\r\n\r\n");
    const auto until = std::chrono::steady_clock::now() + kDeadline;
    while (!node->head_complete() && std::chrono::steady_clock::now() < until) {
      pollfd p{node->fd(), POLLIN, 0};
      ::poll(&p, 1, 100);
      node->ReadSome();
    }
    EXPECT_TRUE(node->head_complete());
  }
  ~Streamed() {
    if (node_end >= 0) ::close(node_end);
    if (client_end >= 0) ::close(client_end);
    ::close(client_fd);
  }

  RelayLoop::Stream For(milliseconds idle = milliseconds(60000)) {
    RelayLoop::Stream s;
    s.node = node.get();
    s.client_fd = client_fd;
    s.idle = idle;
    s.client_timeout = milliseconds(30000);
    s.tail = &tail;
    return s;
  }

  // Reads the client's side until `done(payload, ended)` holds or the deadline passes.
  template <typename Done>
  bool ReadUntil(Done done) {
    const auto until = std::chrono::steady_clock::now() + kDeadline;
    std::string payload;
    bool ended = false;
    while (std::chrono::steady_clock::now() < until) {
      if (!Unchunk(framed, &payload, &ended)) return false;
      if (done(payload, ended)) return true;
      pollfd p{client_end, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[65536];
      const ssize_t n = ::recv(client_end, buf, sizeof buf, 0);
      if (n <= 0) return false;
      framed.append(buf, static_cast<size_t>(n));
    }
    return false;
  }

  std::unique_ptr<UpstreamConnection> node;
  int node_end = -1;
  int client_fd = -1;
  int client_end = -1;
  std::string tail;
  std::string framed;  // what the client received
};

TEST(RelayLoopTest, RelaysTheNodesBodyAsChunksInOrderAndFinishes) {
  RelayLoop loop(milliseconds(20));
  Streamed s;
  auto carried = std::async(std::launch::async, [&] { return loop.Carry(s.For()); });
  Send(s.node_end, Chunk("{\"response\":\"Hel\"}\n"));
  ASSERT_TRUE(s.ReadUntil([](const std::string& p, bool) { return p.size() == 19; }));
  Send(s.node_end, Chunk("{\"response\":\"lo\"}\n") + Chunk("{\"done\":true}\n") + "0\r\n\r\n");
  ASSERT_EQ(carried.wait_for(kDeadline), std::future_status::ready);
  EXPECT_EQ(carried.get(), End::kFinished);
  std::string payload;
  ASSERT_TRUE(s.ReadUntil([&](const std::string& p, bool) {
    payload = p;
    return p.size() == 19 + 18 + 14;
  }));
  EXPECT_EQ(payload, "{\"response\":\"Hel\"}\n{\"response\":\"lo\"}\n{\"done\":true}\n");
  EXPECT_EQ(s.tail, "}\n");
  // The terminating chunk is the caller's: the loop did not write it.
  bool ended = true;
  ASSERT_TRUE(Unchunk(s.framed, &payload, &ended));
  EXPECT_FALSE(ended);
  EXPECT_EQ(loop.carried(), 0u);
}

TEST(RelayLoopTest, AClientThatLeavesEndsItsStream) {
  RelayLoop loop(milliseconds(20));
  Streamed s;
  auto carried = std::async(std::launch::async, [&] { return loop.Carry(s.For()); });
  Send(s.node_end, Chunk("{\"response\":\"a\"}\n"));
  ASSERT_TRUE(s.ReadUntil([](const std::string& p, bool) { return !p.empty(); }));
  ::close(s.client_end);
  s.client_end = -1;
  ASSERT_EQ(carried.wait_for(kDeadline), std::future_status::ready);
  EXPECT_EQ(carried.get(), End::kClientGone);
}

TEST(RelayLoopTest, ANodeThatDiesMidAnswerIsAFailureAfterWhatItSent) {
  RelayLoop loop(milliseconds(20));
  Streamed s;
  auto carried = std::async(std::launch::async, [&] { return loop.Carry(s.For()); });
  Send(s.node_end, Chunk("{\"response\":\"a\"}\n") + "5\r\n{\"re");
  ::close(s.node_end);
  s.node_end = -1;
  ASSERT_EQ(carried.wait_for(kDeadline), std::future_status::ready);
  EXPECT_EQ(carried.get(), End::kNodeFailed);
  EXPECT_FALSE(s.node->error().empty());
  // Everything the node sent before it died reached the client, the torn piece included.
  ASSERT_TRUE(
      s.ReadUntil([](const std::string& p, bool) { return p == "{\"response\":\"a\"}\n{\"re"; }));
  EXPECT_EQ(s.tail, "re");
}

TEST(RelayLoopTest, ASilentNodeEndsWithIdleAfterItsLimit) {
  RelayLoop loop(milliseconds(20));
  Streamed s;
  const auto start = std::chrono::steady_clock::now();
  auto carried =
      std::async(std::launch::async, [&] { return loop.Carry(s.For(milliseconds(150))); });
  ASSERT_EQ(carried.wait_for(kDeadline), std::future_status::ready);
  EXPECT_EQ(carried.get(), End::kIdle);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(150));
}

TEST(RelayLoopTest, AbortEndsEveryStreamNowAndLater) {
  RelayLoop loop(milliseconds(20));
  Streamed a;
  Streamed b;
  auto first = std::async(std::launch::async, [&] { return loop.Carry(a.For()); });
  auto second = std::async(std::launch::async, [&] { return loop.Carry(b.For()); });
  const auto until = std::chrono::steady_clock::now() + kDeadline;
  while (loop.carried() < 2 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  loop.Abort();
  ASSERT_EQ(first.wait_for(kDeadline), std::future_status::ready);
  ASSERT_EQ(second.wait_for(kDeadline), std::future_status::ready);
  EXPECT_EQ(first.get(), End::kStopping);
  EXPECT_EQ(second.get(), End::kStopping);
  Streamed c;
  EXPECT_EQ(loop.Carry(c.For()), End::kStopping);
}

TEST(RelayLoopTest, AClientThatReadsLateGetsEveryByteInOrder) {
  RelayLoop loop(milliseconds(20));
  Streamed s;
  // Far more than the loop buffers for a client: the rest has to wait in the node's socket.
  const size_t pieces = 8 * RelayLoop::kMaxPendingBytes / 1000;
  std::string expected;
  for (size_t i = 0; i < pieces; ++i)
    expected += std::string(999, static_cast<char>('a' + i % 26)) + "\n";
  auto carried = std::async(std::launch::async, [&] { return loop.Carry(s.For()); });
  std::atomic<size_t> sent{0};
  std::thread node([&] {
    for (size_t i = 0; i < pieces; ++i) {
      Send(s.node_end, Chunk(expected.substr(i * 1000, 1000)));
      sent += 1000;
    }
    Send(s.node_end, "0\r\n\r\n");
  });
  // The client reads nothing until the loop has taken more than it buffers for one client.
  const auto until = std::chrono::steady_clock::now() + kDeadline;
  while (sent.load() <= RelayLoop::kMaxPendingBytes && std::chrono::steady_clock::now() < until) {
    std::this_thread::yield();
  }
  ASSERT_GT(sent.load(), RelayLoop::kMaxPendingBytes);
  ASSERT_TRUE(s.ReadUntil([&](const std::string& p, bool) { return p.size() >= expected.size(); }));
  node.join();
  ASSERT_EQ(carried.wait_for(kDeadline), std::future_status::ready);
  EXPECT_EQ(carried.get(), End::kFinished);
  std::string payload;
  bool ended = false;
  ASSERT_TRUE(Unchunk(s.framed, &payload, &ended));
  EXPECT_TRUE(payload == expected) << "payload of " << payload.size() << " bytes differs";
}

TEST(RelayLoopTest, AClientThatTakesNothingIsGivenUpAfterItsTimeout) {
  RelayLoop loop(milliseconds(20));
  Streamed s;
  RelayLoop::Stream stream = s.For();
  stream.client_timeout = milliseconds(200);
  auto carried = std::async(std::launch::async, [&] { return loop.Carry(stream); });
  // The node keeps sending; the client never reads. Writes to the node fail once the loop has
  // given up and the test closes the proxy's end of the node's socket.
  std::thread node([&] {
    const std::string piece = Chunk(std::string(4000, 'x') + "\n");
    while (::send(s.node_end, piece.data(), piece.size(), MSG_NOSIGNAL) > 0) {
    }
  });
  ASSERT_EQ(carried.wait_for(kDeadline), std::future_status::ready);
  EXPECT_EQ(carried.get(), End::kClientGone);
  s.node->Close();
  node.join();
}

TEST(RelayLoopTest, ManyStreamsAtOnceEachGetTheirOwnBytes) {
  RelayLoop loop(milliseconds(20));
  constexpr int kStreams = 48;
  constexpr int kPieces = 20;
  std::vector<std::unique_ptr<Streamed>> streams;
  std::vector<std::future<End>> carried;
  for (int i = 0; i < kStreams; ++i) {
    streams.push_back(std::make_unique<Streamed>());
    Streamed* s = streams.back().get();
    carried.push_back(std::async(std::launch::async, [&loop, s] { return loop.Carry(s->For()); }));
  }
  for (int k = 0; k < kPieces; ++k) {
    for (int i = 0; i < kStreams; ++i) {
      Send(streams[i]->node_end, Chunk(std::to_string(i) + ":" + std::to_string(k) + "\n"));
    }
  }
  for (int i = 0; i < kStreams; ++i) Send(streams[i]->node_end, "0\r\n\r\n");
  for (int i = 0; i < kStreams; ++i) {
    std::string expected;
    for (int k = 0; k < kPieces; ++k)
      expected += std::to_string(i) + ":" + std::to_string(k) + "\n";
    ASSERT_EQ(carried[i].wait_for(kDeadline), std::future_status::ready);
    EXPECT_EQ(carried[i].get(), End::kFinished);
    EXPECT_TRUE(streams[i]->ReadUntil([&](const std::string& p, bool) { return p == expected; }))
        << "stream " << i << " got " << streams[i]->framed;
  }
}

}  // namespace
}  // namespace corral::dataplane
