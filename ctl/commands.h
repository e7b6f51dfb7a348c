// The Admin API calls behind corralctl's commands: one parsed Invocation becomes one or two gRPC
// calls to corral-control, and the answer is printed as a table or as JSON (format.h).
//
// Every unary call carries the admin token as `authorization: Bearer <token>` metadata and a 5 s
// deadline; a pull streams for as long as the nodes take, so it has none. A failed call prints
// `corralctl: <the server's message>` to `err` and yields exit status 1.
//
// Thread safety: RunCommand uses only its arguments; concurrent calls are independent.
#pragma once

#include <chrono>
#include <ostream>

#include "ctl/args.h"

namespace corral::ctl {

inline constexpr std::chrono::seconds kCallDeadline{5};

// Runs `invocation` against the control plane `conn` names. Returns the process exit status:
// kExitOk, or kExitFailed when a call failed (or, for pull, when any node's pull failed).
int RunCommand(const Invocation& invocation, const Connection& conn, std::ostream& out,
               std::ostream& err);

}  // namespace corral::ctl
