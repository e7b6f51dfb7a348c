// TestPki: a throw-away certificate authority for tests, made with the `openssl` command in a
// temp dir, as an operator would make one: a CA, a server certificate for 127.0.0.1 (and
// localhost), a client certificate signed by the same CA, and a second, unrelated CA with a
// client certificate of its own (one the server must refuse).
//
// Keys are P-256 and unencrypted; certificates last two days. Nothing here touches the network.
//
// Thread safety: MakeTestPki may run from any thread; it only writes under `dir`.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace corral::testing {

struct TestPki {
  std::string ca_cert;      // the CA that signed everything below but the stranger_* files
  std::string server_cert;  // CN and subjectAltName IP:127.0.0.1, DNS:localhost; serverAuth
  std::string server_key;
  std::string client_cert;  // CN corral-client; clientAuth
  std::string client_key;
  std::string stranger_ca_cert;      // another CA
  std::string stranger_client_cert;  // a client certificate the other CA signed
  std::string stranger_client_key;
};

// Makes every file under `dir` (which must exist). Fails with openssl's output when a command
// fails.
absl::StatusOr<TestPki> MakeTestPki(const std::string& dir);

}  // namespace corral::testing
