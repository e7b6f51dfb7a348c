// Finding the client's socket from inside an httplib handler: the dataplane's name for
// common/client_socket.h, which the simulated node shares. See there for why and how.
//
// Thread safety: as common/client_socket.h (safe from any thread).
#pragma once

#include "common/client_socket.h"

namespace corral::dataplane {

using ::corral::FindClientSocket;

}  // namespace corral::dataplane
