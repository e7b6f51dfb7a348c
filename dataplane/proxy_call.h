// ProxyCall: one client request as the units of the request path see it (docs/proxy.md "Code
// map"): the client's request and response, the head the listener parsed, the front door's
// decision, the buffered body and what the handlers learn along the way. The handler builds it
// on its stack and passes it by reference to the unit that answers the route; a streamed
// answer copies what it needs from it before the handler returns.
//
// The request's record (request_record.h) lives in its Admitted ticket: the units fill it
// through record(), and the handler finishes it once the answer is set (FinishRecord in
// proxy_server.cc) unless a relay carried it on (record_carried: the relay holds the ticket and
// finishes the record when the answer's body ends).
//
// Thread safety: belongs to the worker thread serving its request; never shared.
#pragma once

#include <httplib.h>

#include <memory>
#include <optional>
#include <string>

#include "common/request_head.h"
#include "dataplane/client_socket.h"
#include "dataplane/front_door.h"
#include "dataplane/request_record.h"
#include "dataplane/route.h"
#include "dataplane/routing_table.h"

namespace corral::dataplane {

// The request header that pins a request to one node (and the response header that names the
// node that served it).
inline constexpr const char* kNodeHeader = "X-Corral-Node";
// The response header saying how many nodes the request was sent to before this answer.
inline constexpr const char* kAttemptsHeader = "X-Corral-Attempts";

// ProxyCall::client_fd before anyone looked for the client's socket.
inline constexpr int kClientNotSearched = -2;

struct ProxyCall {
  ProxyCall(const httplib::Request& r, httplib::Response& s, const RequestHead& h, Admitted& a)
      : req(r), res(s), head(h), admitted(a), route(a.route), table(a.table) {
    // A ticket made outside the front door (a unit test's) still gets a record, kept by no one.
    if (!admitted.record) admitted.record.emplace(nullptr, RequestRecord::Clock::now());
  }

  RecordHandle& record_handle() { return *admitted.record; }
  RequestRecord& record() { return admitted.record->record(); }

  // The client's socket (-1 when not found), looked up on first use: finding it costs a
  // descriptor scan off the serving thread's fast path (client_socket.h), so fast requests that
  // never wait on a node skip it.
  int ClientFd() {
    if (client_fd == kClientNotSearched) {
      client_fd =
          FindClientSocket(req.remote_addr, req.remote_port, req.local_addr, req.local_port);
    }
    return client_fd;
  }

  const httplib::Request& req;
  httplib::Response& res;
  // The head as the listener parsed it from the client's bytes: what is forwarded.
  const RequestHead& head;
  Admitted& admitted;  // the front door's decision: token, admission slot, body reservation
  const Route& route;
  const std::shared_ptr<const RoutingTable>& table;
  std::string body;       // the buffered request body
  bool has_body = false;  // a body is sent upstream (POST/DELETE...)
  // The client's socket: kClientNotSearched, -1 (not found or no longer watched) or the fd.
  int client_fd = kClientNotSearched;
  std::string pinned;  // X-Corral-Node

  // The listener's ticket holding `admitted`, for a relay that outlives the handler (null when
  // the call was built without one).
  std::shared_ptr<void> const* ticket = nullptr;
  // A relay took the record on: the handler must not finish it.
  bool record_carried = false;
  // How the request ended when a unit decided it (no node, client gone); otherwise the handler
  // reads it from the answer. `error` says why, in the client's words.
  std::optional<RequestOutcome> outcome;
  std::string error;
};

}  // namespace corral::dataplane
