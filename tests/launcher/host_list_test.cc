// -H and hostfile parsing: Open MPI's meaning, and errors naming the entry
// or line at fault.
#include "host_list.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kolo {
namespace launcher {
namespace {

using ::testing::HasSubstr;

using Hosts = std::vector<HostSlots>;

TEST(HostList, ParsesHostsAndSlots) {
  EXPECT_EQ(*ParseHostList("a:2,b:4"), (Hosts{{"a", 2}, {"b", 4}}));
  EXPECT_EQ(*ParseHostList("node-1.example.org"),
            (Hosts{{"node-1.example.org", 1}}));
  EXPECT_EQ(*ParseHostList("10.77.0.1:2,10.77.0.2:2"),
            (Hosts{{"10.77.0.1", 2}, {"10.77.0.2", 2}}));
}

TEST(HostList, RepeatedHostsAddUpAtTheirFirstPosition) {
  EXPECT_EQ(*ParseHostList("a,b:2,a:3"), (Hosts{{"a", 4}, {"b", 2}}));
}

TEST(HostList, ErrorsNameTheEntry) {
  struct Case {
    const char* flag;
    const char* message;
  };
  const Case cases[] = {
      {"a:2,b:x", "-H entry 2 'b:x': slots 'x' must be a positive integer"},
      {"a:0", "-H entry 1 'a:0': slots '0'"},
      {"a:-1", "slots '-1'"},
      {"a:+1", "slots '+1'"},
      {"a:", "-H entry 1 'a:': slots ''"},
      {"a:1:2", "-H entry 1 'a:1:2': expected HOST or HOST:SLOTS"},
      {"a,,b", "-H entry 2 '': '' is not a host name"},
      {":2", "'' is not a host name"},
      {"a b:2", "'a b' is not a host name"},
      {"", "-H entry 1 ''"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Hosts> hosts = ParseHostList(c.flag);
    ASSERT_FALSE(hosts.ok()) << c.flag;
    EXPECT_THAT(std::string(hosts.status().message()), HasSubstr(c.message))
        << c.flag;
  }
}

TEST(Hostfile, ParsesOpenMpiSyntaxWithComments) {
  const char* text =
      "# cluster\n"
      "\n"
      "node1 slots=4\n"
      "  node2\tslots=2   # the small one\n"
      "node3\r\n"
      "node1 slots=1\n";
  EXPECT_EQ(*ParseHostfile(text, "hosts"),
            (Hosts{{"node1", 5}, {"node2", 2}, {"node3", 1}}));
}

TEST(Hostfile, ErrorsNameTheFileAndLine) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"a slots=2\nb slots=x\n",
       "hostfile hosts line 2: slots 'x' must be a positive integer"},
      {"a\n\n# c\nb slots=0", "hostfile hosts line 4: slots '0'"},
      {"a max_slots=4", "hostfile hosts line 1: unexpected 'max_slots=4'"},
      {"a slots=2 extra", "hostfile hosts line 1: unexpected 'extra'"},
      {"a:2", "hostfile hosts line 1: 'a:2' is not a host name"},
      {"slots=2", "line 1: 'slots=2' is not a host name"},
      {"# nothing\n\n", "hostfile hosts names no hosts"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Hosts> hosts = ParseHostfile(c.text, "hosts");
    ASSERT_FALSE(hosts.ok()) << c.text;
    EXPECT_THAT(std::string(hosts.status().message()), HasSubstr(c.message))
        << c.text;
  }
}

TEST(HostList, FormatsTheHFlag) {
  EXPECT_EQ(FormatHostList({{"a", 2}, {"b", 1}}), "a:2,b:1");
  EXPECT_EQ(FormatHostList({}), "");
}

}  // namespace
}  // namespace launcher
}  // namespace kolo
