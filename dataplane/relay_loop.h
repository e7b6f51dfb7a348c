// RelayLoop: one thread that carries the bodies of streamed answers from their nodes to their
// clients, many streams per wake-up.
//
// A streamed answer (NDJSON or SSE, a token at a time) used to keep its own worker thread busy
// for every chunk: wake on the node's bytes, write them to the client, sleep again. On a small
// machine those wake-ups are most of what a stream costs (docs/performance.md, "the floor of one
// hop"), and with thousands of streams they crowd out everything else. Here the worker hands
// the stream over once the answer's head is out and sleeps until the stream ends; this thread
// waits on every carried stream's node socket at once (epoll) and moves whatever arrived, from
// all of them, in one pass.
//
// The loop writes the client's socket itself, as HTTP/1.1 chunks, never blocking: what a client
// does not take yet waits in the stream's buffer, and while that holds kMaxPendingBytes or more
// the node's socket is not read, so TCP slows the node down instead of the proxy's memory
// growing. The worker is parked in the listener's answer-writing code the whole time, so
// nothing else writes to that socket meanwhile.
//
// Thread safety: Carry and Abort may be called from any thread, any number at once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "dataplane/answer_usage.h"
#include "dataplane/upstream.h"

namespace corral::dataplane {

// What a request's record learns from the body bytes relayed to its client: how many, the
// token usage in them, and when the first token went out. Fed by whichever thread relays the
// bytes at the time (the request's worker, or the relay loop while the worker waits in Carry).
struct RelayTap {
  AnswerUsageReader* usage = nullptr;  // null: the answer carries no usage (the first bytes
                                       // relayed then stand for the first token)
  uint64_t bytes = 0;
  std::optional<std::chrono::steady_clock::time_point> first_token;

  void Saw(std::string_view piece) {
    bytes += piece.size();
    const bool token = usage != nullptr ? usage->Feed(piece) : !piece.empty();
    if (token && !first_token) first_token = std::chrono::steady_clock::now();
  }
};

// Keeps in `tail` the last two bytes of everything relayed so far, `piece` being the newest: an
// error line after a failure must start on a line (or SSE event) of its own.
void RememberTail(const std::string& piece, std::string* tail);

class RelayLoop {
 public:
  // A buffer of bytes a client has not taken yet at which the node's socket stops being read:
  // one read's worth, so thousands of stalled clients cost the proxy little memory (the kernel's
  // socket buffers hold the rest, and TCP slows the node down).
  static constexpr size_t kMaxPendingBytes = kUpstreamReadBuffer;

  enum class End {
    kFinished,    // the node's answer ended and every byte reached the client's socket; the
                  // terminating chunk is the caller's to write
    kClientGone,  // the client closed its end, or took nothing for `client_timeout`
    kNodeFailed,  // reading from the node failed; the node's connection says why (error())
    kIdle,        // the node sent nothing for `idle`
    kStopping,    // Abort() was called or the loop is being destroyed
  };

  struct Stream {
    UpstreamConnection* node = nullptr;           // mid-answer: head parsed, no body bytes pending
    int client_fd = -1;                           // the client's socket, written directly as chunks
    std::chrono::milliseconds idle{0};            // longest silence from the node
    std::chrono::milliseconds client_timeout{0};  // longest stall writing to the client
    std::string* tail = nullptr;                  // the last two bytes relayed, kept up to date
    RelayTap* tap = nullptr;                      // optional: told of every piece relayed
  };

  // `tick`: how often silent streams are checked for their idle limits.
  explicit RelayLoop(std::chrono::milliseconds tick);
  // Ends the streams still carried with kStopping.
  ~RelayLoop();
  RelayLoop(const RelayLoop&) = delete;
  RelayLoop& operator=(const RelayLoop&) = delete;

  // Carries `stream` until it ends and says how; the calling thread sleeps meanwhile. Bytes
  // written to the client before a failure stay written; after kFinished, kNodeFailed and kIdle
  // nothing is left unsent, so the caller can append its own chunk.
  // REQUIRES: stream.node has no parsed body bytes waiting (has_body() is false) and its
  // message is not complete; no other thread uses stream.node or writes stream.client_fd.
  End Carry(const Stream& stream);

  // Ends every stream, now and later, with kStopping (the end of a graceful stop's grace).
  void Abort();

  // Streams carried right now.
  size_t carried() const { return carried_.load(); }

 private:
  struct Entry;
  struct Watch {
    Entry* entry;
    bool client;
  };

  void Run();
  void Register(Entry* e);
  // Reads what the node sent and queues it for the client.
  void Pump(Entry* e);
  // Writes what is queued; completes the stream when it was ending and nothing is left.
  void Flush(Entry* e);
  // The stream's end is decided; it completes once its queued bytes are out.
  void Finish(Entry* e, End end);
  // Takes the stream out of the loop and queues its waiter's wake-up.
  void Complete(Entry* e, End end);
  void UpdateInterest(Entry* e);
  void CheckLimits(std::chrono::steady_clock::time_point now);

  const std::chrono::milliseconds tick_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: new streams, Abort, destruction
  std::thread thread_;
  std::atomic<size_t> carried_{0};

  std::mutex mu_;  // guards incoming_, stopping_, aborting_ and each Entry's done/end
  std::vector<Entry*> incoming_;
  bool stopping_ = false;
  bool aborting_ = false;

  // Loop thread only.
  std::vector<Entry*> streams_;
  std::vector<std::pair<Entry*, End>> completed_;  // woken after each pass
};

}  // namespace corral::dataplane
