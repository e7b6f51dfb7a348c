// Test support: real child processes on loopback, and waiting for conditions with a deadline.
//
// Every Corral binary takes `--port-file PATH`: once its listener is bound (port 0 allowed) it
// writes the port number to PATH (via a rename, so a reader never sees half a number). Tests
// start binaries on port 0 and learn the port this way: no port is ever guessed.
//
// Thread safety: a ChildProcess is used by one test thread; WaitFor may run anywhere.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace corral::testing {

// Polls `pred` every few milliseconds until it is true or `timeout` passes. Never a fixed sleep:
// returns as soon as the condition holds.
::testing::AssertionResult WaitFor(const std::function<bool()>& pred,
                                   std::chrono::milliseconds timeout,
                                   const std::string& what = "condition");

// A fresh directory under the test temp dir, removed by the caller if it wants to.
std::string MakeTempDir(const std::string& prefix);

// Path of a built binary, e.g. BinaryPath("corral-sim"): the build's bin/ directory, found
// from the test binary's own location (both land in build/bin).
std::string BinaryPath(const std::string& name);

// The whole content of the file at `path`, or "" when it cannot be read (a port file not yet
// written, a child that logged nothing).
std::string ReadFile(const std::string& path);

class ChildProcess {
 public:
  // Starts `binary` with `args`. stdout and stderr go to a log file in `log_dir` (printed by
  // DumpLog when a test fails). Adds `--port-file` itself when `wants_port` is true.
  ChildProcess(const std::string& binary, std::vector<std::string> args, const std::string& log_dir,
               bool wants_port = true);
  ~ChildProcess();  // SIGKILL and reap if still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Waits for the port file; 0 on timeout or if the process exited first.
  int WaitForPort(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  bool Running();
  // Sends `sig` and, for SIGTERM/SIGINT/SIGKILL, waits for exit up to `timeout`. Returns the
  // exit status as waitpid reports it, or -1 if the process did not exit in time.
  int Signal(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  int Kill() { return Signal(9); }
  std::string Log() const;  // what it wrote so far
  void DumpLog() const;     // prints the log to the test output
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::string port_file_;
  std::string log_file_;
  pid_t pid_ = -1;
  int port_ = 0;
  int status_ = 0;
  bool reaped_ = false;
};

}  // namespace corral::testing
