// The search itself lives in common/client_socket.cc; this unit only keeps the dataplane header
// compiled on its own.
#include "dataplane/client_socket.h"
