#include "memory_allocator.h"

#include <map>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kolo {
namespace launcher {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr char kTcmalloc[] =
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4";
constexpr char kJemalloc[] = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";

FileExists Installed(std::set<std::string> files) {
  return [files](const std::string& path) { return files.count(path) > 0; };
}

TEST(MemoryAllocator, AutoPreloadsTcmallocWhenInstalled) {
  auto setup = PlanMemoryAllocator("auto", {}, Installed({kTcmalloc}));
  ASSERT_TRUE(setup.ok()) << setup.status();
  EXPECT_EQ(setup->name, "tcmalloc");
  EXPECT_THAT(setup->set_env,
              UnorderedElementsAre(Pair("LD_PRELOAD", kTcmalloc)));
  // Empty means auto (KOLO_MEMORY_ALLOCATOR unset).
  auto unset = PlanMemoryAllocator("", {}, Installed({kTcmalloc}));
  ASSERT_TRUE(unset.ok());
  EXPECT_EQ(unset->name, "tcmalloc");
}

TEST(MemoryAllocator, AutoTunesGlibcWithoutTcmalloc) {
  auto setup = PlanMemoryAllocator("auto", {}, Installed({kJemalloc}));
  ASSERT_TRUE(setup.ok()) << setup.status();
  EXPECT_EQ(setup->name, "glibc");
  EXPECT_THAT(setup->set_env,
              UnorderedElementsAre(Pair("MALLOC_MMAP_THRESHOLD_", "33554432"),
                                   Pair("MALLOC_TRIM_THRESHOLD_", "4294967296"),
                                   Pair("MALLOC_TOP_PAD_", "536870912")));
}

TEST(MemoryAllocator, UsersGlibcSettingsWin) {
  for (const auto& env : std::vector<std::map<std::string, std::string>>{
           {{"MALLOC_TOP_PAD_", "0"}},
           {{"GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1"}}}) {
    auto setup = PlanMemoryAllocator("glibc", env, Installed({}));
    ASSERT_TRUE(setup.ok()) << setup.status();
    EXPECT_THAT(setup->set_env, IsEmpty());
    EXPECT_THAT(setup->name, HasSubstr("user's"));
  }
  // A tunable that is not malloc's does not count.
  auto setup = PlanMemoryAllocator(
      "glibc", {{"GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX"}}, Installed({}));
  ASSERT_TRUE(setup.ok());
  EXPECT_EQ(setup->set_env.size(), 3u);
}

TEST(MemoryAllocator, ExplicitChoicesPreloadTheirLibrary) {
  auto je =
      PlanMemoryAllocator("jemalloc", {}, Installed({kTcmalloc, kJemalloc}));
  ASSERT_TRUE(je.ok()) << je.status();
  EXPECT_THAT(je->set_env, UnorderedElementsAre(Pair("LD_PRELOAD", kJemalloc)));
  auto system = PlanMemoryAllocator("system", {}, Installed({kTcmalloc}));
  ASSERT_TRUE(system.ok());
  EXPECT_EQ(system->name, "system");
  EXPECT_THAT(system->set_env, IsEmpty());
}

TEST(MemoryAllocator, UsersPreloadIsKeptAfterTheAllocator) {
  auto setup = PlanMemoryAllocator("tcmalloc", {{"LD_PRELOAD", "/opt/x.so"}},
                                   Installed({kTcmalloc}));
  ASSERT_TRUE(setup.ok());
  EXPECT_EQ(setup->set_env.at("LD_PRELOAD"),
            std::string(kTcmalloc) + ":/opt/x.so");
  // Applied twice (a monitor under a monitor): not preloaded twice.
  auto again = PlanMemoryAllocator(
      "tcmalloc", {{"LD_PRELOAD", setup->set_env.at("LD_PRELOAD")}},
      Installed({kTcmalloc}));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->set_env.at("LD_PRELOAD"), setup->set_env.at("LD_PRELOAD"));
}

TEST(MemoryAllocator, LdLibraryPathIsSearchedFirst) {
  auto setup = PlanMemoryAllocator(
      "tcmalloc", {{"LD_LIBRARY_PATH", "/opt/lib::/other"}},
      Installed({"/opt/lib/libtcmalloc_minimal.so.4", kTcmalloc}));
  ASSERT_TRUE(setup.ok());
  EXPECT_EQ(setup->set_env.at("LD_PRELOAD"),
            "/opt/lib/libtcmalloc_minimal.so.4");
}

TEST(MemoryAllocator, MissingLibraryNamesTheDebianPackage) {
  auto tc = PlanMemoryAllocator("tcmalloc", {}, Installed({}));
  ASSERT_FALSE(tc.ok());
  EXPECT_THAT(tc.status().message(),
              HasSubstr("apt-get install libtcmalloc-minimal4"));
  auto je = PlanMemoryAllocator("jemalloc", {}, Installed({kTcmalloc}));
  ASSERT_FALSE(je.ok());
  EXPECT_THAT(je.status().message(), HasSubstr("apt-get install libjemalloc2"));
}

TEST(MemoryAllocator, UnknownNameIsRefusedWithTheChoices) {
  auto setup = PlanMemoryAllocator("tcmaloc", {}, Installed({kTcmalloc}));
  ASSERT_FALSE(setup.ok());
  EXPECT_THAT(setup.status().message(),
              HasSubstr("unknown memory allocator 'tcmaloc' (auto, tcmalloc, "
                        "jemalloc, glibc, system)"));
}

}  // namespace
}  // namespace launcher
}  // namespace kolo
