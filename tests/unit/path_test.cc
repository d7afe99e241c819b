#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "fs/path.h"

namespace airlock::fs {

TEST(Path, Normalize) {
  EXPECT_EQ(normalize("/"), "/");
  EXPECT_EQ(normalize("//a///b/"), "/a/b");
  EXPECT_EQ(normalize("/a/./b/../c"), "/a/c");
  EXPECT_EQ(normalize("/../../x"), "/x");
}

TEST(Path, Absolutize) {
  EXPECT_EQ(absolutize("~", "/home/u", "/ws"), "/home/u");
  EXPECT_EQ(absolutize("~/.ssh", "/home/u", "/ws"), "/home/u/.ssh");
  EXPECT_EQ(absolutize("src/../x", "/home/u", "/ws"), "/ws/x");
  EXPECT_EQ(absolutize("/etc//passwd", "/home/u", "/ws"), "/etc/passwd");
  EXPECT_EQ(absolutize("~user", "/home/u", "/ws"), "/ws/~user");  // not a home shorthand
}

TEST(Path, WithinIsByComponent) {
  EXPECT_TRUE(is_within("/a/b", "/a"));
  EXPECT_TRUE(is_within("/a", "/a"));
  EXPECT_FALSE(is_within("/ab", "/a"));
  EXPECT_TRUE(is_within("/x", "/"));
  EXPECT_EQ(depth("/"), 0);
  EXPECT_EQ(depth("/a/b"), 2);
  EXPECT_EQ(parent("/a/b"), "/a");
  EXPECT_EQ(parent("/a"), "/");
  EXPECT_EQ(relative_to("/a/b/c", "/a"), "b/c");
}

class ResolveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char t[] = "/var/tmp/airlock-unit-XXXXXX";
    ASSERT_NE(::mkdtemp(t), nullptr);
    root = t;
    ::mkdir((root + "/real").c_str(), 0755);
    std::ofstream(root + "/real/file") << "x";
    ASSERT_EQ(::symlink((root + "/real").c_str(), (root + "/abs").c_str()), 0);
    ASSERT_EQ(::symlink("real/file", (root + "/rel").c_str()), 0);
    ASSERT_EQ(::symlink("loop", (root + "/loop").c_str()), 0);
    ASSERT_EQ(::symlink("real/missing", (root + "/dangling").c_str()), 0);
  }
  void TearDown() override { (void)!std::system(("rm -rf " + root).c_str()); }
  std::string root;
};

TEST_F(ResolveTest, FollowsLinksInEveryComponent) {
  auto r = resolve(root + "/abs/file");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->path, root + "/real/file");
  EXPECT_TRUE(r->exists);
  EXPECT_FALSE(r->is_dir);
  auto r2 = resolve(root + "/rel");
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->path, root + "/real/file");
}

TEST_F(ResolveTest, DotDotAfterALinkIsPhysical) {
  // abs/.. is the parent of real (the link's target), like the kernel does.
  auto r = resolve(root + "/abs/../real/file");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->path, root + "/real/file");
}

TEST_F(ResolveTest, MissingTailIsAppended) {
  auto r = resolve(root + "/abs/new/deeper");
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->exists);
  EXPECT_EQ(r->path, root + "/real/new/deeper");
  EXPECT_EQ(r->first_missing, root + "/real/new");
}

TEST_F(ResolveTest, DanglingLinkResolvesToWhereItWouldPoint) {
  auto r = resolve(root + "/dangling");
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->exists);
  EXPECT_EQ(r->path, root + "/real/missing");
}

TEST_F(ResolveTest, LoopIsAnError) {
  auto r = resolve(root + "/loop/x");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("too many levels"), std::string::npos);
}

}  // namespace airlock::fs
