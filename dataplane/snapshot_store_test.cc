// SnapshotStore: validation, version order, atomic swap, on-disk copy.
#include "dataplane/snapshot_store.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace corral::dataplane
