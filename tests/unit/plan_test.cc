// Planning is pure: a Policy in, mounts / placeholders / Landlock rules out.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "fs/plan.h"

namespace airlock::fs {

using policy::PathRule;
using policy::RuleKind;

class PlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char t[] = "/var/tmp/airlock-plan-XXXXXX";
    ASSERT_NE(::mkdtemp(t), nullptr);
    root = t;
    for (const char* d : {"home", "home/.ssh", "home/proj", "home/proj/.git", "home/proj/.git/hooks", "home/proj/data",
                          "home/other"})
      ::mkdir((root + "/" + d).c_str(), 0755);
    std::ofstream(root + "/home/.ssh/id") << "k";
    std::ofstream(root + "/home/notes") << "n";
    std::ofstream(root + "/home/proj/.env") << "e";
  }
  void TearDown() override { (void)!std::system(("rm -rf " + root).c_str()); }

  void add(RuleKind k, const std::string& rel, const std::string& why = "test") {
    std::string p = root + "/" + rel;
    struct stat st {};
    bool ex = ::stat(p.c_str(), &st) == 0;
    pol.rules.push_back({k, p, ex, ex && S_ISDIR(st.st_mode), why});
  }

  const MountOp* mount_at(const Plan& plan, const std::string& rel) {
    for (const auto& m : plan.mounts)
      if (m.target == root + "/" + rel) return &m;
    return nullptr;
  }
  const LandlockRule* rule_at(const Plan& plan, const std::string& abs) {
    const LandlockRule* found = nullptr;
    for (const auto& r : plan.landlock)
      if (r.path == abs) found = &r;
    return found;
  }

  std::string root;
  policy::Policy pol;
};

TEST_F(PlanTest, SkeletonComesFirst) {
  auto plan = make_plan(pol);
  ASSERT_TRUE(plan) << plan.error().message;
  ASSERT_GE(plan->mounts.size(), 4u);
  EXPECT_EQ(plan->mounts[0].target, "/tmp");
  EXPECT_EQ(plan->mounts[1].target, "/run");
  EXPECT_EQ(plan->mounts[2].kind, MountOp::Kind::Proc);
}

TEST_F(PlanTest, DeniedSecretBecomesStandIn) {
  add(RuleKind::DenyRead, "home/.ssh");
  auto plan = make_plan(pol);
  ASSERT_TRUE(plan);
  auto* m = mount_at(*plan, "home/.ssh");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->kind, MountOp::Kind::StandIn);
  EXPECT_TRUE(m->is_dir);
}

TEST_F(PlanTest, WorkspaceBoundWritableWithProtectedInsideReadOnly) {
  add(RuleKind::AllowWrite, "home/proj");
  add(RuleKind::DenyWrite, "home/proj/.git/hooks");
  auto plan = make_plan(pol);
  ASSERT_TRUE(plan);
  auto* ws = mount_at(*plan, "home/proj");
  auto* hooks = mount_at(*plan, "home/proj/.git/hooks");
  ASSERT_NE(ws, nullptr);
  ASSERT_NE(hooks, nullptr);
  EXPECT_FALSE(ws->read_only);
  EXPECT_TRUE(hooks->read_only);
  EXPECT_LT(ws, hooks) << "the parent must be mounted first";
  // Landlock cannot narrow inside a writable folder: recorded as a gap.
  ASSERT_EQ(plan->landlock_gaps.size(), 1u);
}

TEST_F(PlanTest, DenyWinsAtTheSamePath) {
  add(RuleKind::AllowWrite, "home/other");
  add(RuleKind::DenyWrite, "home/other");
  add(RuleKind::AllowRead, "home/proj");
  add(RuleKind::DenyRead, "home/proj");
  auto plan = make_plan(pol);
  ASSERT_TRUE(plan);
  EXPECT_EQ(mount_at(*plan, "home/other"), nullptr);  // read-only like the rest of the host
  auto* p = mount_at(*plan, "home/proj");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->kind, MountOp::Kind::StandIn);
}

TEST_F(PlanTest, AllowReadInsideDenyReadIsBoundIntoTheStandIn) {
  add(RuleKind::DenyRead, "home");
  add(RuleKind::AllowRead, "home/proj");
  auto plan = make_plan(pol);
  ASSERT_TRUE(plan);
  auto* h = mount_at(*plan, "home");
  auto* p = mount_at(*plan, "home/proj");
  ASSERT_NE(h, nullptr);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(h->kind, MountOp::Kind::StandIn);
  EXPECT_EQ(p->kind, MountOp::Kind::BindHost);
  EXPECT_TRUE(p->create_target);  // its mount point lives in the stand-in's tmpfs
  EXPECT_TRUE(p->read_only);
}

TEST_F(PlanTest, MissingProtectedPathInWritableFolderGetsPlaceholder) {
  add(RuleKind::AllowWrite, "home/proj");
  add(RuleKind::DenyWrite, "home/proj/.vscode");
  add(RuleKind::DenyWrite, "home/proj/.mcp.json");
  add(RuleKind::DenyWrite, "home/other/.vscode");  // not writable anyway: no placeholder
  auto plan = make_plan(pol);
  ASSERT_TRUE(plan);
  ASSERT_EQ(plan->placeholders.size(), 2u);
  for (const auto& p : plan->placeholders) {
    if (p.path == root + "/home/proj/.vscode") {
      EXPECT_TRUE(p.dir);
    } else {
      EXPECT_EQ(p.path, root + "/home/proj/.mcp.json");
      EXPECT_FALSE(p.dir);
    }
  }
}

TEST_F(PlanTest, LandlockCarvesAroundAReadDenial) {
  add(RuleKind::DenyRead, "home/.ssh");
  auto plan = make_plan(pol);
  ASSERT_TRUE(plan);
  // The secret folder keeps only READ_DIR; its siblings keep full read.
  auto* ssh = rule_at(*plan, root + "/home/.ssh");
  ASSERT_NE(ssh, nullptr);
  EXPECT_EQ(ssh->access, ll::kReadDir);
  auto* notes = rule_at(*plan, root + "/home/notes");
  ASSERT_NE(notes, nullptr);
  EXPECT_EQ(notes->access, ll::kRead & ll::kFileOnly);
  auto* home = rule_at(*plan, root + "/home");
  ASSERT_NE(home, nullptr);
  EXPECT_EQ(home->access & ll::kReadFile, 0u) << "the folder on the way may not grant file reads below it";
  // "/" itself is carved too, so nothing grants READ_FILE over the secret.
  for (const auto& r : plan->landlock) {
    bool ancestor_of_secret = r.path == "/" || root.rfind(r.path + "/", 0) == 0;
    if (ancestor_of_secret) {
      EXPECT_EQ(r.access & ll::kReadFile, 0u) << r.path;
    }
  }
}

TEST_F(PlanTest, NoDeleteInsideWorkspaceIsCarved) {
  add(RuleKind::AllowWrite, "home/proj");
  add(RuleKind::NoDelete, "home/proj/data");
  auto plan = make_plan(pol);
  ASSERT_TRUE(plan);
  auto* data = rule_at(*plan, root + "/home/proj/data");
  ASSERT_NE(data, nullptr);
  EXPECT_EQ(data->access, ll::kNoDelete);
  auto* proj = rule_at(*plan, root + "/home/proj");
  ASSERT_NE(proj, nullptr);
  EXPECT_EQ(proj->access & (ll::kRemoveFile | ll::kRemoveDir), 0u);
  auto* git = rule_at(*plan, root + "/home/proj/.git");
  ASSERT_NE(git, nullptr);
  EXPECT_EQ(git->access, ll::kReadWrite);
  ASSERT_EQ(plan->no_delete.size(), 1u);
}

TEST_F(PlanTest, PathsInsideManagedFoldersAreRefused) {
  pol.rules.push_back({RuleKind::AllowWrite, "/proc/sys", true, true, "s.json: filesystem.allowWrite[0]"});
  auto plan = make_plan(pol);
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message.find("s.json: filesystem.allowWrite[0]"), std::string::npos);
}

TEST_F(PlanTest, DenyingTheWholeFilesystemIsRefused) {
  pol.rules.push_back({RuleKind::DenyRead, "/", true, true, "--deny-read /"});
  EXPECT_FALSE(make_plan(pol));
}

}  // namespace airlock::fs
