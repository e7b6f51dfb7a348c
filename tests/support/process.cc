#include "tests/support/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

namespace corral::testing {
namespace {

std::string SelfDir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

}  // namespace

::testing::AssertionResult WaitFor(const std::function<bool()>& pred,
                                   std::chrono::milliseconds timeout, const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return ::testing::AssertionSuccess();
    if (std::chrono::steady_clock::now() >= deadline) {
      return ::testing::AssertionFailure()
             << "timed out after " << timeout.count() << " ms waiting for " << what;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::string MakeTempDir(const std::string& prefix) {
  static std::atomic<int> counter{0};
  std::string base = ::testing::TempDir();
  if (base.empty() || base.back() != '/') base += '/';
  std::string dir =
      base + prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string BinaryPath(const std::string& name) { return SelfDir() + "/" + name; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ChildProcess::ChildProcess(const std::string& binary, std::vector<std::string> args,
                           const std::string& log_dir, bool wants_port) {
  static std::atomic<int> counter{0};
  name_ = std::filesystem::path(binary).filename().string() + "-" +
          std::to_string(counter.fetch_add(1));
  log_file_ = log_dir + "/" + name_ + ".log";
  if (wants_port) {
    port_file_ = log_dir + "/" + name_ + ".port";
    std::filesystem::remove(port_file_);
    args.push_back("--port-file");
    args.push_back(port_file_);
  }
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_ = ::fork();
  if (pid_ == 0) {
    int fd = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::close(fd);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    // Die with the test binary, so a crashed test leaves no servers behind.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::execv(binary.c_str(), argv.data());
    std::perror("execv");
    ::_exit(127);
  }
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status_, 0);
  }
}

int ChildProcess::WaitForPort(std::chrono::milliseconds timeout) {
  if (port_ != 0) return port_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::string text = ReadFile(port_file_);
    if (!text.empty()) {
      port_ = std::atoi(text.c_str());
      if (port_ > 0) return port_;
    }
    if (!Running()) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return 0;
}

bool ChildProcess::Running() {
  if (pid_ <= 0 || reaped_) return false;
  pid_t r = ::waitpid(pid_, &status_, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    return false;
  }
  return true;
}

int ChildProcess::Signal(int sig, std::chrono::milliseconds timeout) {
  if (!Running()) return status_;
  ::kill(pid_, sig);
  if (sig != SIGTERM && sig != SIGINT && sig != SIGKILL) return 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!Running()) {
      port_ = 0;
      return status_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return -1;
}

std::string ChildProcess::Log() const { return ReadFile(log_file_); }

void ChildProcess::DumpLog() const {
  std::cerr << "----- log of " << name_ << " -----\n"
            << Log() << "----- end of " << name_ << " -----\n";
}

}  // namespace corral::testing
