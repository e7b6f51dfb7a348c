// AccessLog: whole lines from many threads, and logrotate's move-then-reopen losing nothing.
#include "common/access_log.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/process.h"

namespace corral {
namespace {

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A line a test can recognise whole: writer, sequence and a body long enough to straddle a
// page boundary now and then.
std::string LineOf(int writer, int seq) {
  return "{\"writer\":" + std::to_string(writer) + ",\"seq\":" + std::to_string(seq) +
         ",\"pad\":\"" + std::string(static_cast<size_t>(100 + seq % 300), 'x') + "\"}";
}

bool IsWholeLine(const std::string& line) {
  return line.rfind("{\"writer\":", 0) == 0 && line.size() > 2 &&
         line.substr(line.size() - 2) == "\"}" && line.find('{', 1) == std::string::npos;
}

TEST(AccessLogTest, LinesFromManyThreadsArriveWholeAndAllOfThem) {
  const std::string dir = corral::testing::MakeTempDir("access_log");
  const std::string path = dir + "/access.log";
  auto log = AccessLog::Open(path);
  ASSERT_TRUE(log.ok()) << log.status();
  constexpr int kWriters = 8;
  constexpr int kEach = 2000;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kEach; ++i) EXPECT_TRUE((*log)->Write(LineOf(w, i)));
    });
  }
  for (auto& t : writers) t.join();
  const auto lines = Lines(path);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kWriters * kEach));
  for (const auto& line : lines) ASSERT_TRUE(IsWholeLine(line)) << line.substr(0, 200);
  EXPECT_EQ((*log)->failed_writes(), 0u);
}

TEST(AccessLogTest, ReopenAfterTheFileWasMovedWritesToANewFileByTheSameName) {
  const std::string dir = corral::testing::MakeTempDir("access_log");
  const std::string path = dir + "/access.log";
  auto log = AccessLog::Open(path);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->Write("{\"before\":1}"));
  std::filesystem::rename(path, path + ".1");    // what logrotate does first
  ASSERT_TRUE((*log)->Write("{\"before\":2}"));  // still the moved file, until the reopen
  ASSERT_TRUE((*log)->Reopen().ok());
  ASSERT_TRUE((*log)->Write("{\"after\":1}"));
  EXPECT_EQ(Lines(path + ".1"), (std::vector<std::string>{"{\"before\":1}", "{\"before\":2}"}));
  EXPECT_EQ(Lines(path), std::vector<std::string>{"{\"after\":1}"});
}

TEST(AccessLogTest, ReopenWhileThreadsWriteLosesAndTearsNoLine) {
  const std::string dir = corral::testing::MakeTempDir("access_log");
  const std::string path = dir + "/access.log";
  auto log = AccessLog::Open(path);
  ASSERT_TRUE(log.ok()) << log.status();
  constexpr int kWriters = 4;
  constexpr int kEach = 3000;
  std::atomic<int> done{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kEach; ++i) (*log)->Write(LineOf(w, i));
      done.fetch_add(1);
    });
  }
  int rotations = 0;
  while (done.load() < kWriters) {
    ++rotations;
    std::filesystem::rename(path, path + "." + std::to_string(rotations));
    ASSERT_TRUE((*log)->Reopen().ok());
  }
  for (auto& t : writers) t.join();
  size_t total = 0;
  for (int r = 0; r <= rotations; ++r) {
    const std::string file = r == 0 ? path : path + "." + std::to_string(r);
    for (const auto& line : Lines(file)) {
      ASSERT_TRUE(IsWholeLine(line)) << file << ": " << line.substr(0, 200);
      ++total;
    }
  }
  EXPECT_EQ(total, static_cast<size_t>(kWriters * kEach)) << rotations << " rotations";
}

TEST(AccessLogTest, AFileThatCannotBeOpenedIsAnErrorNamingIt) {
  auto log = AccessLog::Open("/nonexistent-dir-for-corral/access.log");
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.status().message().find("/nonexistent-dir-for-corral/access.log"),
            std::string::npos)
      << log.status();
}

TEST(AccessLogTest, AFailedReopenKeepsWritingToTheOpenFile) {
  const std::string dir = corral::testing::MakeTempDir("access_log");
  const std::string sub = dir + "/logs";
  std::filesystem::create_directory(sub);
  const std::string path = sub + "/access.log";
  auto log = AccessLog::Open(path);
  ASSERT_TRUE(log.ok()) << log.status();
  std::filesystem::rename(sub, dir + "/moved");
  EXPECT_FALSE((*log)->Reopen().ok());
  EXPECT_TRUE((*log)->Write("{\"still\":1}"));
  EXPECT_EQ(Lines(dir + "/moved/access.log"), std::vector<std::string>{"{\"still\":1}"});
}

TEST(AccessLogTest, DashIsStandardOutput) {
  auto log = AccessLog::Open("-");
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ((*log)->path(), "-");
  EXPECT_TRUE((*log)->Reopen().ok());
}

}  // namespace
}  // namespace corral
