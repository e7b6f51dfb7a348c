// SnapshotStore: validation, version order, atomic swap, on-disk copy.
#include "dataplane/snapshot_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "tests/support/process.h"

namespace corral::dataplane {
namespace {

corral::v1::Snapshot Snapshot(uint64_t version, const std::string& url = "http://127.0.0.1:1") {
  corral::v1::Snapshot s;
  s.set_version(version);
  auto* node = s.add_nodes();
  node->set_name("gpu-1");
  node->set_url(url);
  node->set_admin_state(corral::v1::ADMIN_STATE_ENABLED);
  return s;
}

TEST(SnapshotStoreTest, AppliesNewerRefusesOlderKeepsServing) {
  SnapshotStore store;
  EXPECT_EQ(store.Current(), nullptr);
  ASSERT_TRUE(store.Apply(Snapshot(5), "test").ok());
  auto held = store.Current();
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(store.version(), 5u);
  const auto older = store.Apply(Snapshot(4), "test");
  EXPECT_EQ(older.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store.version(), 5u);
  ASSERT_TRUE(store.Apply(Snapshot(6), "control:x").ok());
  EXPECT_EQ(store.version(), 6u);
  EXPECT_EQ(store.source(), "control:x");
  EXPECT_EQ(held->version(), 5u);  // a reader's view never changes under it
}

TEST(SnapshotStoreTest, InvalidSnapshotIsRejectedAndTheOldOneStays) {
  SnapshotStore store;
  ASSERT_TRUE(store.Apply(Snapshot(1), "test").ok());
  const auto bad = store.Apply(Snapshot(2, "ftp://nowhere"), "test");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.version(), 1u);
}

TEST(SnapshotStoreTest, PersistsAndReloadsFromDisk) {
  const std::string dir = corral::testing::MakeTempDir("snapshot_store");
  const std::string path = dir + "/snapshot.json";
  {
    SnapshotStore store(path);
    ASSERT_TRUE(store.Apply(Snapshot(9), "control:x").ok());
  }
  SnapshotStore restarted(path);
  ASSERT_TRUE(restarted.LoadFile(path).ok());
  EXPECT_EQ(restarted.version(), 9u);
  EXPECT_EQ(restarted.source(), "file:" + path);
  ASSERT_NE(restarted.Current()->FindNode("gpu-1"), nullptr);
  std::filesystem::remove_all(dir);
}

TEST(SnapshotStoreTest, FileErrorsSayWhatIsWrong) {
  const std::string dir = corral::testing::MakeTempDir("snapshot_store");
  SnapshotStore store;
  EXPECT_EQ(store.LoadFile(dir + "/missing.json").code(), absl::StatusCode::kNotFound);
  std::ofstream(dir + "/bad.json") << R"({"version": "1", "nodes": [{"nmae": "x"}]})";
  const auto bad = store.LoadFile(dir + "/bad.json");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Current(), nullptr);
  std::filesystem::remove_all(dir);
}

// What a crash half-way through a write (of a version that wrote in place) leaves: the caller
// must be able to tell it from a missing file and from a wrong one.
TEST(SnapshotStoreTest, TornFileIsDataLoss) {
  const std::string dir = corral::testing::MakeTempDir("snapshot_store");
  const std::string path = dir + "/snapshot.json";
  ASSERT_TRUE(WriteSnapshotFile(path, Snapshot(4)).ok());
  const std::string whole = corral::testing::ReadFile(path);
  ASSERT_GT(whole.size(), 10u);
  for (const size_t keep : {size_t{0}, whole.size() / 2, whole.size() - 2}) {
    std::ofstream(path, std::ios::trunc) << whole.substr(0, keep);
    SnapshotStore store;
    const absl::Status loaded = store.LoadFile(path);
    EXPECT_EQ(loaded.code(), absl::StatusCode::kDataLoss) << keep << " bytes: " << loaded;
    EXPECT_NE(loaded.message().find("torn or damaged"), std::string::npos) << loaded;
    EXPECT_EQ(store.Current(), nullptr);
  }
  std::filesystem::remove_all(dir);
}

TEST(SnapshotStoreTest, OnDiskCopyIsOwnerOnlyAndLeavesNoTempFile) {
  const std::string dir = corral::testing::MakeTempDir("snapshot_store");
  const std::string path = dir + "/snapshot.json";
  // An older copy readable by everyone: the next write replaces it with an owner-only file.
  std::ofstream(path) << "{}";
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  SnapshotStore store(path);
  ASSERT_TRUE(store.Apply(Snapshot(5), "control:x").ok());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NE(::stat((path + ".tmp").c_str(), &st), 0);
  auto reread = ReadSnapshotFile(path);
  ASSERT_TRUE(reread.ok()) << reread.status();
  EXPECT_EQ(reread->version(), 5u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace corral::dataplane
