#include "dataplane/answer_relay.h"

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "common/ascii.h"
#include "common/log.h"
#include "dataplane/answer_usage.h"
#include "dataplane/headers.h"
#include "dataplane/replies.h"
#include "dataplane/request_id.h"

namespace corral::dataplane {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

bool IsStreamType(const std::string& content_type) {
  return absl::StartsWithIgnoreCase(content_type, "text/event-stream");
}

// Sets the node's status and headers on the client's response, less those never copied
// (headers.h) and those the proxy sets itself: the node that served, the attempts it took, and
// the request's id (set on every answer by the handler).
void SetNodeHead(ProxyCall& call, int status,
                 const std::vector<std::pair<std::string, std::string>>& headers,
                 const std::string& node) {
  httplib::Response& res = call.res;
  res.status = status;
  const std::vector<std::string> connection = ResponseConnectionOptions(headers);
  // Straight into the map rather than through set_header: the node's head was parsed by
  // http_parser, which takes no CR or LF into a name or value, and the proxy's own values are
  // node names and digits, so set_header's check would find nothing.
  for (const auto& [k, v] : headers) {
    if (!IsDroppedResponseHeader(k, connection) && !EqualsIgnoreCase(k, kNodeHeader) &&
        !EqualsIgnoreCase(k, kAttemptsHeader) && !EqualsIgnoreCase(k, kRequestIdHeader)) {
      res.headers.emplace(k, v);
    }
  }
  res.headers.emplace(kNodeHeader, node);
  res.headers.emplace(kAttemptsHeader,
                      std::to_string(std::max<size_t>(1, call.record().attempts.size())));
}

// Reads the token usage of a whole answer into the request's record.
void ReadWholeUsage(ProxyCall& call, const std::string& content_type, std::string_view body) {
  const AnswerFormat format = AnswerFormatFor(call.route.endpoint, content_type);
  if (format == AnswerFormat::kNone) return;
  AnswerUsageReader reader(format);
  reader.Feed(body);
  reader.Finish();
  call.record().input_tokens = reader.usage().input_tokens;
  call.record().output_tokens = reader.usage().output_tokens;
}

// Copies what a relay learnt into the record, and finishes it.
void FinishRelayed(RecordHandle& handle, RelayTap& tap, int status, RequestOutcome outcome,
                   std::string error) {
  RequestRecord& record = handle.record();
  if (tap.usage != nullptr) {
    if (tap.usage->Finish() && !tap.first_token) tap.first_token = Clock::now();
    record.input_tokens = tap.usage->usage().input_tokens;
    record.output_tokens = tap.usage->usage().output_tokens;
  }
  record.bytes_out = tap.bytes;
  record.first_token = tap.first_token;
  handle.Finish(status, outcome, std::move(error));
}

void SetBody(httplib::Response& res, std::string body, const std::string& content_type) {
  if (content_type.empty()) {
    res.body = std::move(body);
  } else {
    res.set_content(std::move(body), content_type);
  }
}

// Hands the call's record to a relay that outlives the handler; null when the call has no
// listener ticket to keep it alive (then the handler finishes it).
RecordHandle* CarryRecord(ProxyCall& call, std::shared_ptr<void>* ticket) {
  if (call.ticket == nullptr || *call.ticket == nullptr) return nullptr;
  *ticket = *call.ticket;
  call.record_carried = true;
  call.record().streamed = true;
  return &call.record_handle();
}

// The request's record, carried by a relay that outlives its handler to the answer's end: the
// listener's ticket that holds it, what the relay learns, and how the answer ended when it did
// not complete.
struct CarriedRecord {
  std::shared_ptr<void> ticket;
  RecordHandle* record = nullptr;
  int status = 0;
  std::optional<AnswerUsageReader> usage;
  RelayTap tap;
  RequestOutcome end = RequestOutcome::kClientGone;
  std::string end_error = "the client left mid-answer";

  // Takes the call's record and starts reading token counts from an answer of `content_type`.
  void Begin(ProxyCall& call, const std::string& content_type) {
    status = call.res.status;
    record = CarryRecord(call, &ticket);
    if (const AnswerFormat format = AnswerFormatFor(call.route.endpoint, content_type);
        format != AnswerFormat::kNone) {
      tap.usage = &usage.emplace(format);
    }
  }
  // Notes how the answer ended, should it not complete.
  void Ended(RequestOutcome outcome, std::string error) {
    end = outcome;
    end_error = std::move(error);
  }
  // Finishes the record (when the call had one to carry): answered when `complete`.
  void Finish(bool complete) {
    if (record == nullptr) return;
    FinishRelayed(*record, tap, status, complete ? RequestOutcome::kAnswered : end,
                  complete ? std::string() : std::move(end_error));
  }
};

// What a streamed answer needs after the handler returned: httplib calls the provider on the
// same worker thread, and destroys this (through the releaser's captures) when done.
struct StreamState {
  std::unique_ptr<UpstreamConnection> conn;
  Lease lease;  // keeps the node's slot, and its table (so `node` stays valid)
  std::shared_ptr<void> admission;
  const NodeEntry* node = nullptr;
  EffectivePolicy policy;
  std::string path;
  bool sse = false;
  int client_fd = -1;
  bool finished = false;
  // The response head has gone to the client: the listener holds it back until the first body
  // bytes, so a node that sent its head alone gets it pushed out before the first wait.
  bool head_sent = false;
  std::string tail;       // the last two bytes relayed, to start an error on a line of its own
  CarriedRecord carried;  // the request's record, to the stream's end
};

std::string IdleReason(const std::string& node, milliseconds idle) {
  return "node '" + node + "' sent nothing for " + std::to_string(idle.count() / 1000) + " s";
}

std::string MidStreamFailure(const std::string& node, const std::string& error) {
  return "node '" + node + "' failed mid-stream: " + error;
}

}  // namespace

void CopyResponseHead(ProxyCall& call, const UpstreamConnection& conn, const std::string& node) {
  SetNodeHead(call, conn.status(), conn.headers(), node);
}

void AnswerWhole(ProxyCall& call, const UpstreamConnection& conn, const std::string& node,
                 std::string body) {
  CopyResponseHead(call, conn, node);
  SetBody(call.res, std::move(body), std::string(conn.Header("Content-Type")));
}

void AnswerSaved(ProxyCall& call, const SavedResponse& saved) {
  SetNodeHead(call, saved.status, saved.headers, saved.node);
  SetBody(call.res, saved.body, saved.content_type);
}

AnswerRelay::AnswerRelay(NodeExchange& exchange, Router& router, milliseconds stream_poll)
    : exchange_(exchange), router_(router), stream_poll_(stream_poll), relay_loop_(stream_poll) {}

bool AnswerRelay::Relay(ProxyCall& call, Lease lease, std::unique_ptr<UpstreamConnection> conn,
                        std::string* error) {
  const std::string content_type(conn->Header("Content-Type"));
  const bool streamed = !conn->has_content_length() && !conn->message_complete();
  if (streamed) {
    RelayStream(call, std::move(lease), std::move(conn), content_type);
    return true;
  }
  if (conn->content_length() > kMaxBufferedAnswer && !conn->message_complete()) {
    RelayLargeBody(call, std::move(lease), std::move(conn), content_type);
    return true;
  }
  std::string body;
  if (!exchange_.ReadWholeBody(call, *conn, kMaxBufferedAnswer, &body, error)) return false;
  const NodeEntry& node = lease.node();
  CopyResponseHead(call, *conn, node.name);
  ReadWholeUsage(call, content_type, body);
  SetBody(call.res, std::move(body), content_type);
  exchange_.GiveBack(node, std::move(conn));
  return true;
}

void AnswerRelay::RelayStream(ProxyCall& call, Lease lease,
                              std::unique_ptr<UpstreamConnection> conn,
                              const std::string& content_type) {
  CopyResponseHead(call, *conn, lease.node().name);
  auto relay = std::make_shared<StreamState>();
  relay->conn = std::move(conn);
  relay->node = &lease.node();
  relay->lease = std::move(lease);
  relay->admission = call.admitted.slot;
  relay->policy = call.table->policy();
  relay->path = call.req.path;
  relay->sse = call.route.openai || IsStreamType(content_type);
  // On the serving thread this is one comparison (client_socket.h).
  relay->client_fd = call.ClientFd() >= 0 ? call.client_fd : -1;
  relay->carried.Begin(call, content_type);
  const milliseconds idle(relay->policy.idle_ms);
  const milliseconds poll_slice = stream_poll_;
  auto provider = [this, relay, idle, poll_slice](size_t, httplib::DataSink& sink) -> bool {
    UpstreamConnection& up = *relay->conn;
    const std::string& node = relay->node->name;
    auto last = Clock::now();
    auto fail = [&](const std::string& reason, RequestOutcome outcome) {
      CORRAL_LOG(kWarn, "proxy") << relay->path << ": stream from node " << node
                                 << " broke: " << reason;
      relay->carried.Ended(outcome, reason);
      router_.RecordFailure(node, relay->policy);
      // The error must stand on a line (or SSE event) of its own, even when the node died in the
      // middle of one.
      std::string chunk;
      if (relay->sse && relay->tail.size() == 2 && relay->tail != "\n\n") {
        chunk = relay->tail.back() == '\n' ? "\n" : "\n\n";
      } else if (!relay->sse && !relay->tail.empty() && relay->tail.back() != '\n') {
        chunk = "\n";
      }
      chunk += StreamErrorChunk(reason, relay->sse);
      up.Close();
      if (!sink.write(chunk.data(), chunk.size())) return false;
      // End the body properly, as an Ollama node does after its own error line: clients read
      // the error line and raise it, while a connection cut before the last chunk makes some
      // HTTP stacks (Node's fetch) drop bytes already received, error line included.
      sink.done();
      return true;
    };
    while (true) {
      if (up.has_body()) {
        const std::string piece = up.TakeBody();
        RememberTail(piece, &relay->tail);
        relay->carried.tap.Saw(piece);
        if (!sink.write(piece.data(), piece.size())) {
          up.Close();  // the client left: closing makes the node stop generating
          return false;
        }
        // Keep looping rather than returning: httplib stops calling a provider once the
        // server is stopping, and a graceful stop must let open streams run to their end.
        last = Clock::now();
        relay->head_sent = true;
      }
      if (up.message_complete()) {
        relay->finished = true;
        sink.done();
        return true;
      }
      if (exchange_.aborting()) {
        return fail("corral-proxy is shutting down", RequestOutcome::kProxyStopping);
      }
      if (!relay->head_sent) {
        relay->head_sent = true;
        // A writability check sends what the listener holds (the head) and sees a client
        // that already left.
        if (!sink.is_writable()) {
          up.Close();
          return false;
        }
      }
      if (relay->client_fd >= 0 && !up.has_body()) {
        // The head is out and nothing is pending: the relay loop carries the rest, many streams
        // per wake-up, while this thread sleeps (relay_loop.h).
        RelayLoop::Stream carried;
        carried.node = &up;
        carried.client_fd = relay->client_fd;
        carried.idle = idle;
        carried.client_timeout = kClientWriteTimeout;
        carried.tail = &relay->tail;
        carried.tap = &relay->carried.tap;
        switch (relay_loop_.Carry(carried)) {
          case RelayLoop::End::kFinished:
            relay->finished = true;
            sink.done();
            return true;
          case RelayLoop::End::kClientGone:
            up.Close();  // closing makes the node stop generating
            return false;
          case RelayLoop::End::kNodeFailed:
            return fail(MidStreamFailure(node, up.error()), RequestOutcome::kNodeFailed);
          case RelayLoop::End::kIdle:
            return fail(IdleReason(node, idle), RequestOutcome::kIdleTimeout);
          case RelayLoop::End::kStopping:
            return fail("corral-proxy is shutting down", RequestOutcome::kProxyStopping);
        }
      }
      const WaitOutcome waited = up.Wait(poll_slice, &relay->client_fd);
      if (waited == WaitOutcome::kClientGone) {
        up.Close();
        return false;
      }
      if (waited == WaitOutcome::kTimeout) {
        if (!sink.is_writable()) {
          up.Close();
          return false;
        }
        if (Clock::now() - last > idle) {
          return fail(IdleReason(node, idle), RequestOutcome::kIdleTimeout);
        }
        continue;
      }
      const ReadOutcome read = up.ReadSome();
      if (read == ReadOutcome::kClosed || read == ReadOutcome::kError) {
        return fail(MidStreamFailure(node, up.error()), RequestOutcome::kNodeFailed);
      }
      if (read == ReadOutcome::kProgress) last = Clock::now();
    }
  };
  auto releaser = [this, relay](bool) {
    if (relay->finished) {
      exchange_.GiveBack(*relay->node, std::move(relay->conn));
    } else if (relay->conn) {
      relay->conn->Close();
    }
    relay->carried.Finish(relay->finished);
  };
  call.res.set_chunked_content_provider(content_type, std::move(provider), std::move(releaser));
}

void AnswerRelay::RelayLargeBody(ProxyCall& call, Lease lease,
                                 std::unique_ptr<UpstreamConnection> conn,
                                 const std::string& content_type) {
  CopyResponseHead(call, *conn, lease.node().name);
  struct LargeBody {
    std::unique_ptr<UpstreamConnection> conn;
    Lease lease;  // keeps the node's slot, and its table (so `node` stays valid)
    const NodeEntry* node = nullptr;
    EffectivePolicy policy;
    int client_fd = -1;
    uint64_t length = 0;
    CarriedRecord carried;  // the request's record, to the body's end
  };
  auto relay = std::make_shared<LargeBody>();
  relay->conn = std::move(conn);
  relay->node = &lease.node();
  relay->lease = std::move(lease);
  relay->policy = call.table->policy();
  relay->client_fd = call.ClientFd() >= 0 ? call.client_fd : -1;
  relay->length = static_cast<uint64_t>(relay->conn->content_length());
  relay->carried.Begin(call, content_type);
  call.record().streamed = false;  // one long answer, not a stream
  const milliseconds idle(relay->policy.idle_ms);
  // httplib calls the provider until the announced length is written; the node's bytes go out
  // as they arrive, so the proxy holds one read of them at a time. A node that fails inside the
  // body leaves the client short of the length it was promised: the connection closes, which
  // every HTTP client reads as a failed answer.
  auto provider = [this, relay, idle](size_t, size_t, httplib::DataSink& sink) -> bool {
    UpstreamConnection& up = *relay->conn;
    auto last = Clock::now();
    while (true) {
      if (up.has_body()) {
        const std::string piece = up.TakeBody();
        relay->carried.tap.Saw(piece);
        if (!sink.write(piece.data(), piece.size())) {
          up.Close();
          return false;
        }
        return true;
      }
      if (up.message_complete()) {
        relay->carried.Ended(RequestOutcome::kNodeFailed,
                             "node '" + relay->node->name + "' ended its answer short");
        return false;
      }
      if (exchange_.aborting()) {
        relay->carried.Ended(RequestOutcome::kProxyStopping, "corral-proxy is shutting down");
        return false;
      }
      const WaitOutcome waited = up.Wait(stream_poll_, &relay->client_fd);
      if (waited == WaitOutcome::kClientGone) {
        up.Close();
        return false;
      }
      if (waited == WaitOutcome::kTimeout) {
        if (Clock::now() - last > idle) {
          CORRAL_LOG(kWarn, "proxy") << "node " << relay->node->name << " sent nothing for "
                                     << idle.count() << " ms inside an answer";
          router_.RecordFailure(relay->node->name, relay->policy);
          relay->carried.Ended(RequestOutcome::kIdleTimeout, IdleReason(relay->node->name, idle));
          return false;
        }
        continue;
      }
      const ReadOutcome read = up.ReadSome();
      if (read == ReadOutcome::kClosed || read == ReadOutcome::kError) {
        CORRAL_LOG(kWarn, "proxy")
            << "node " << relay->node->name << " failed inside an answer: " << up.error();
        router_.RecordFailure(relay->node->name, relay->policy);
        relay->carried.Ended(RequestOutcome::kNodeFailed,
                             MidStreamFailure(relay->node->name, up.error()));
        return false;
      }
      last = Clock::now();
    }
  };
  auto releaser = [this, relay](bool) {
    exchange_.GiveBack(*relay->node, std::move(relay->conn));
    relay->carried.Finish(relay->carried.tap.bytes == relay->length);
  };
  call.res.set_content_provider(static_cast<size_t>(relay->conn->content_length()), content_type,
                                std::move(provider), std::move(releaser));
}

}  // namespace corral::dataplane
