// private_files: real files and directories in a temp dir, modes read back with stat.
#include "common/private_files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "tests/support/process.h"

namespace corral {
namespace {

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 07777;
  return st.st_mode & 07777;
}

class PrivateFilesTest : public ::testing::Test {
 protected:
  std::string dir_ = corral::testing::MakeTempDir("private-files");
};

TEST_F(PrivateFilesTest, NewDirIsCreatedOwnerOnlyWithItsParents) {
  const std::string dir = dir_ + "/a/b/data";
  ASSERT_TRUE(EnsurePrivateDir(dir, "data dir").ok());
  EXPECT_EQ(ModeOf(dir), 0700);
}

TEST_F(PrivateFilesTest, LooseDirIsTightened) {
  const std::string dir = dir_ + "/data";
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  ASSERT_TRUE(EnsurePrivateDir(dir, "data dir").ok());
  EXPECT_EQ(ModeOf(dir), 0700);
}

TEST_F(PrivateFilesTest, AFileWhereTheDirShouldBeIsAnError) {
  const std::string path = dir_ + "/file";
  std::ofstream(path) << "x";
  const absl::Status s = EnsurePrivateDir(path, "data dir");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("is not a directory"), std::string::npos) << s;
}

TEST_F(PrivateFilesTest, LooseFileIsTightenedAndAMissingOneIsFine) {
  const std::string path = dir_ + "/admin.token";
  EXPECT_TRUE(EnsurePrivateFile(path, "token file").ok());
  std::ofstream(path) << "secret\n";
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  ASSERT_TRUE(EnsurePrivateFile(path, "token file").ok());
  EXPECT_EQ(ModeOf(path), 0600);
}

TEST_F(PrivateFilesTest, AtomicWriteReplacesTheFileWithModeOwnerOnly) {
  const std::string path = dir_ + "/snapshot.json";
  std::ofstream(path) << "old";
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  // A stale temp file from a crash, with a loose mode, must not lend its mode to the new file.
  std::ofstream(path + ".tmp") << "stale";
  ASSERT_EQ(::chmod((path + ".tmp").c_str(), 0666), 0);
  ASSERT_TRUE(WriteFileAtomically(path, "new content").ok());
  EXPECT_EQ(corral::testing::ReadFile(path), "new content");
  EXPECT_EQ(ModeOf(path), 0600);
  struct stat st;
  EXPECT_NE(::stat((path + ".tmp").c_str(), &st), 0) << "the temp file is renamed away";
}

TEST_F(PrivateFilesTest, AtomicWriteIntoAMissingDirFailsClearly) {
  const absl::Status s = WriteFileAtomically(dir_ + "/no/such/dir/file", "x");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cannot create"), std::string::npos) << s;
}

}  // namespace
}  // namespace corral
