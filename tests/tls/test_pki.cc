#include "tests/tls/test_pki.h"

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tests/support/process.h"

namespace corral::testing {
namespace {

// Runs one shell command with its output in `log`; the paths involved are temp paths without
// quotes in them.
absl::Status Run(const std::string& command, const std::string& log) {
  const std::string line = absl::StrCat(command, " >>'", log, "' 2>&1");
  const int status = std::system(line.c_str());
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(
        absl::StrCat("`", command, "` failed (status ", status, "):\n", ReadFile(log)));
  }
  return absl::OkStatus();
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) return absl::InternalError("cannot write " + path);
  return absl::OkStatus();
}

constexpr char kNewKey[] = "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

absl::Status MakeCa(const std::string& dir, const std::string& name, const std::string& log) {
  return Run(absl::StrCat(kNewKey, " -x509 -days 2 -subj /CN=", name, " -keyout '", dir, "/", name,
                          ".key' -out '", dir, "/", name,
                          ".crt' -addext basicConstraints=critical,CA:TRUE"
                          " -addext keyUsage=critical,keyCertSign,cRLSign"),
             log);
}

// A key and a certificate `name`.crt signed by `ca`, with the extensions in `ext`.
absl::Status MakeLeaf(const std::string& dir, const std::string& ca, const std::string& name,
                      const std::string& cn, const std::string& ext, const std::string& log) {
  const std::string p = absl::StrCat(dir, "/", name);
  if (absl::Status s = WriteText(p + ".ext", ext); !s.ok()) return s;
  if (absl::Status s =
          Run(absl::StrCat(kNewKey, " -subj /CN=", cn, " -keyout '", p, ".key' -out '", p, ".csr'"),
              log);
      !s.ok()) {
    return s;
  }
  return Run(absl::StrCat("openssl x509 -req -days 2 -in '", p, ".csr' -CA '", dir, "/", ca,
                          ".crt' -CAkey '", dir, "/", ca, ".key' -CAcreateserial -out '", p,
                          ".crt' -extfile '", p, ".ext'"),
             log);
}

}  // namespace

absl::StatusOr<TestPki> MakeTestPki(const std::string& dir) {
  const std::string log = dir + "/openssl.log";
  const std::string client_ext =
      "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
      "extendedKeyUsage=clientAuth\n";
  for (absl::Status s : {
           MakeCa(dir, "ca", log),
           MakeLeaf(dir, "ca", "server", "127.0.0.1",
                    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
                    log),
           MakeLeaf(dir, "ca", "client", "corral-client", client_ext, log),
           MakeCa(dir, "stranger-ca", log),
           MakeLeaf(dir, "stranger-ca", "stranger-client", "stranger", client_ext, log),
       }) {
    if (!s.ok()) return s;
  }
  TestPki pki;
  pki.ca_cert = dir + "/ca.crt";
  pki.server_cert = dir + "/server.crt";
  pki.server_key = dir + "/server.key";
  pki.client_cert = dir + "/client.crt";
  pki.client_key = dir + "/client.key";
  pki.stranger_ca_cert = dir + "/stranger-ca.crt";
  pki.stranger_client_cert = dir + "/stranger-client.crt";
  pki.stranger_client_key = dir + "/stranger-client.key";
  return pki;
}

}  // namespace corral::testing
