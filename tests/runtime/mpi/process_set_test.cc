// Multi-rank tests of process sets (kolo/process_set.h): every collective
// among subsets of the ranks against references computed here from the
// members' global ranks, sets that run independently of each other, names
// scoped by set, the data plane chosen per set, and the errors (a rank
// outside the set, sets that differ across ranks, use after removal).
// Run by ctest under mpirun at np 2-4, and at np 4 as two pretend hosts of
// two ranks (KOLO_HOSTNAME), where a set within one host runs on shared
// memory and a set across hosts does not.
#include "kolo/process_set.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kolo/kolo.h"

namespace kolo::testing {
namespace {

Tensor DoubleTensor(std::vector<double>& values,
                    std::vector<int64_t> shape = {}) {
  Tensor t;
  t.data = values.data();
  t.dtype = DataType::kFloat64;
  t.shape = shape.empty()
                ? std::vector<int64_t>{static_cast<int64_t>(values.size())}
                : std::move(shape);
  return t;
}

Tensor IntTensor(std::vector<int64_t>& values) {
  Tensor t;
  t.data = values.data();
  t.dtype = DataType::kInt64;
  t.shape = {static_cast<int64_t>(values.size())};
  return t;
}

// Every rank's view of something, through the global set: checks that all
// ranks agree (e.g. on a set's id).
std::vector<int64_t> GatherFromAll(const std::string& name, int64_t value) {
  std::vector<int64_t> mine = {value};
  StatusOr<Handle> handle = AllgatherAsync(name, IntTensor(mine));
  EXPECT_TRUE(handle.ok()) << handle.status();
  if (!handle.ok()) return {};
  EXPECT_TRUE(handle->Wait().ok());
  const int64_t* out = static_cast<const int64_t*>(handle->output_data());
  return std::vector<int64_t>(out, out + Size());
}

// The sets every test uses: the lower and upper halves of the ranks (odd
// sizes: the middle rank in the lower), and the even ranks.
std::vector<int> LowerHalf() {
  std::vector<int> ranks;
  for (int r = 0; r < (Size() + 1) / 2; ++r) ranks.push_back(r);
  return ranks;
}
std::vector<int> UpperHalf() {
  std::vector<int> ranks;
  for (int r = (Size() + 1) / 2; r < Size(); ++r) ranks.push_back(r);
  return ranks;
}

bool Contains(const std::vector<int>& ranks, int rank) {
  return std::find(ranks.begin(), ranks.end(), rank) != ranks.end();
}

// A value that depends on the global rank and the element.
double Value(int rank, int64_t i) { return (rank + 1) * 10 + i; }

class ProcessSetTest : public ::testing::Test {
 protected:
  void TearDown() override {
    // Leave no set behind for the next test.
    for (const ProcessSet& set : ProcessSets()) {
      if (!set.is_global()) {
        EXPECT_TRUE(RemoveProcessSet(set).ok());
      }
    }
  }
};

TEST_F(ProcessSetTest, MembershipAndIdsAgree) {
  StatusOr<ProcessSet> lower = AddProcessSet(LowerHalf());
  ASSERT_TRUE(lower.ok()) << lower.status();
  // Ranks in any order.
  std::vector<int> upper_reversed = UpperHalf();
  std::reverse(upper_reversed.begin(), upper_reversed.end());
  StatusOr<ProcessSet> upper = AddProcessSet(upper_reversed);
  ASSERT_TRUE(upper.ok()) << upper.status();
  EXPECT_NE(lower->id(), 0);
  EXPECT_NE(lower->id(), upper->id());
  for (int64_t id : GatherFromAll("ids", lower->id())) {
    EXPECT_EQ(id, lower->id());
  }
  EXPECT_EQ(lower->ranks(), LowerHalf());
  EXPECT_EQ(upper->ranks(), UpperHalf());
  const bool in_lower = Contains(LowerHalf(), Rank());
  EXPECT_EQ(lower->Included(), in_lower);
  EXPECT_EQ(upper->Included(), !in_lower);
  EXPECT_EQ(lower->Size(), static_cast<int>(LowerHalf().size()));
  const ProcessSet& mine = in_lower ? *lower : *upper;
  const std::vector<int> my_ranks = mine.ranks();
  EXPECT_EQ(mine.Rank(), std::find(my_ranks.begin(), my_ranks.end(), Rank()) -
                             my_ranks.begin());
  EXPECT_EQ((in_lower ? *upper : *lower).Rank(), -1);
  EXPECT_EQ(ProcessSets().size(), 3u);
  EXPECT_TRUE(ProcessSet().is_global());
  EXPECT_EQ(ProcessSet().Size(), Size());
  EXPECT_EQ(ProcessSet().Rank(), Rank());
}

// Every collective among the members of each half, against references
// computed from the members' global ranks.
TEST_F(ProcessSetTest, CollectivesMatchReferences) {
  StatusOr<ProcessSet> lower = AddProcessSet(LowerHalf());
  ASSERT_TRUE(lower.ok()) << lower.status();
  StatusOr<ProcessSet> upper = AddProcessSet(UpperHalf());
  ASSERT_TRUE(upper.ok()) << upper.status();
  const ProcessSet& set = lower->Included() ? *lower : *upper;
  const std::vector<int> members = set.ranks();
  const int n = static_cast<int>(members.size());
  const int me = Rank();
  const int position = set.Rank();

  // Allreduce, sum and average.
  std::vector<double> x(5), sum(5);
  for (int64_t i = 0; i < 5; ++i) x[i] = Value(me, i);
  AllreduceOptions sum_op;
  sum_op.op = ReduceOp::kSum;
  ASSERT_TRUE(
      set.Allreduce("x", DoubleTensor(x), DoubleTensor(sum), sum_op).ok());
  for (int64_t i = 0; i < 5; ++i) {
    double expected = 0;
    for (int r : members) expected += Value(r, i);
    EXPECT_EQ(sum[i], expected) << i;
  }
  std::vector<double> average(5);
  ASSERT_TRUE(set.Allreduce("x", DoubleTensor(x), DoubleTensor(average)).ok());
  for (int64_t i = 0; i < 5; ++i) EXPECT_DOUBLE_EQ(average[i], sum[i] / n);

  // Grouped allreduce.
  std::vector<double> a = {static_cast<double>(me)}, b = {1.0, 2.0};
  StatusOr<Handle> grouped = set.GroupedAllreduceAsync(
      {"g.a", "g.b"}, {DoubleTensor(a), DoubleTensor(b)},
      {DoubleTensor(a), DoubleTensor(b)}, sum_op);
  ASSERT_TRUE(grouped.ok()) << grouped.status();
  ASSERT_TRUE(grouped->Wait().ok());
  double member_sum = 0;
  for (int r : members) member_sum += r;
  EXPECT_EQ(a[0], member_sum);
  EXPECT_EQ(b[0], n);
  EXPECT_EQ(b[1], 2.0 * n);

  // Allgather: member k sends k + 1 rows of its global rank.
  std::vector<double> rows(position + 1, me);
  StatusOr<Handle> gathered =
      set.AllgatherAsync("rows", DoubleTensor(rows, {position + 1}));
  ASSERT_TRUE(gathered.ok()) << gathered.status();
  ASSERT_TRUE(gathered->Wait().ok());
  std::vector<double> expected_rows;
  for (int k = 0; k < n; ++k) {
    expected_rows.insert(expected_rows.end(), k + 1, members[k]);
  }
  ASSERT_EQ(gathered->output_shape(),
            std::vector<int64_t>{static_cast<int64_t>(expected_rows.size())});
  const double* out = static_cast<const double*>(gathered->output_data());
  EXPECT_EQ(std::vector<double>(out, out + expected_rows.size()),
            expected_rows);

  // Broadcast from every member; the root is a global rank.
  for (int root : members) {
    std::vector<double> buffer = {static_cast<double>(me), -1.0};
    ASSERT_TRUE(
        set.Broadcast(absl::StrCat("bcast.", root), DoubleTensor(buffer), root)
            .ok());
    EXPECT_EQ(buffer[0], root);
  }

  // Alltoall: member k sends j + 1 rows valued 100 * k + j to member j.
  std::vector<int64_t> splits;
  std::vector<double> send;
  for (int j = 0; j < n; ++j) {
    splits.push_back(j + 1);
    send.insert(send.end(), j + 1, 100.0 * position + j);
  }
  StatusOr<Handle> exchanged = set.AlltoallAsync(
      "a2a", DoubleTensor(send, {static_cast<int64_t>(send.size())}), splits);
  ASSERT_TRUE(exchanged.ok()) << exchanged.status();
  ASSERT_TRUE(exchanged->Wait().ok());
  const double* received = static_cast<const double*>(exchanged->output_data());
  for (int k = 0; k < n; ++k) {
    EXPECT_EQ(exchanged->received_splits()[k], position + 1);
    for (int e = 0; e < position + 1; ++e) {
      EXPECT_EQ(received[k * (position + 1) + e], 100.0 * k + position);
    }
  }

  // Reducescatter: 2n rows of the global rank; member k keeps rows 2k, 2k+1.
  std::vector<double> scatter(2 * n);
  for (int i = 0; i < 2 * n; ++i) scatter[i] = me * 1000 + i;
  StatusOr<Handle> scattered = set.ReducescatterAsync(
      "rs", DoubleTensor(scatter), nullptr, ReduceOp::kSum);
  ASSERT_TRUE(scattered.ok()) << scattered.status();
  ASSERT_TRUE(scattered->Wait().ok());
  ASSERT_EQ(scattered->output_shape(), std::vector<int64_t>{2});
  const double* share = static_cast<const double*>(scattered->output_data());
  for (int e = 0; e < 2; ++e) {
    double expected = 0;
    for (int r : members) expected += r * 1000 + 2 * position + e;
    EXPECT_EQ(share[e], expected);
  }

  // Grouped allgather.
  std::vector<double> one = {static_cast<double>(me)};
  StatusOr<Handle> grouped_gather = set.GroupedAllgatherAsync(
      {"ga.1", "ga.2"}, {DoubleTensor(one), DoubleTensor(one)});
  ASSERT_TRUE(grouped_gather.ok()) << grouped_gather.status();
  ASSERT_TRUE(grouped_gather->Wait().ok());
  for (size_t member = 0; member < 2; ++member) {
    const double* g =
        static_cast<const double*>(grouped_gather->output_data(member));
    for (int k = 0; k < n; ++k) EXPECT_EQ(g[k], members[k]);
  }

  EXPECT_TRUE(set.Barrier().ok());
  // Join: the last member to join is a member (a global rank).
  StatusOr<int> last = set.Join();
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_TRUE(Contains(members, *last)) << *last;
  EXPECT_GT(set.GetStats().collectives_executed, 0);
}

// A set's operation runs while another set's is pending on the same rank:
// rank 0 submits to {0, 2} first, but rank 2 submits only after rank 0 and
// rank 1 have finished an allreduce in {0, 1}.
TEST_F(ProcessSetTest, SetsDoNotWaitForEachOther) {
  if (Size() < 3) GTEST_SKIP() << "needs three ranks";
  StatusOr<ProcessSet> a = AddProcessSet({0, 1});
  ASSERT_TRUE(a.ok()) << a.status();
  StatusOr<ProcessSet> b = AddProcessSet({0, 2});
  ASSERT_TRUE(b.ok()) << b.status();
  std::vector<double> x = {static_cast<double>(Rank() + 1)};
  std::vector<double> y = {static_cast<double>(Rank() + 1)};
  AllreduceOptions sum;
  sum.op = ReduceOp::kSum;
  if (Rank() == 0) {
    StatusOr<Handle> in_b =
        b->AllreduceAsync("t", DoubleTensor(y), DoubleTensor(y), sum);
    ASSERT_TRUE(in_b.ok()) << in_b.status();
    // Same name in the other set: names are scoped by set.
    ASSERT_TRUE(a->Allreduce("t", DoubleTensor(x), DoubleTensor(x), sum).ok());
    EXPECT_EQ(x[0], 3.0);
    EXPECT_FALSE(in_b->Poll());
    ASSERT_TRUE(Barrier().ok());
    ASSERT_TRUE(in_b->Wait().ok());
    EXPECT_EQ(y[0], 4.0);
  } else if (Rank() == 1) {
    ASSERT_TRUE(a->Allreduce("t", DoubleTensor(x), DoubleTensor(x), sum).ok());
    EXPECT_EQ(x[0], 3.0);
    ASSERT_TRUE(Barrier().ok());
  } else if (Rank() == 2) {
    ASSERT_TRUE(Barrier().ok());
    ASSERT_TRUE(b->Allreduce("t", DoubleTensor(y), DoubleTensor(y), sum).ok());
    EXPECT_EQ(y[0], 4.0);
  } else {
    ASSERT_TRUE(Barrier().ok());
  }
  // The global set's own "t" is yet another operation.
  std::vector<double> z = {1.0};
  ASSERT_TRUE(Allreduce("t", DoubleTensor(z), DoubleTensor(z), sum).ok());
  EXPECT_EQ(z[0], Size());
}

// The data plane is chosen per set: a set within one host uses shared
// memory even when the job spans hosts.
TEST_F(ProcessSetTest, DataPlanePerSet) {
  StatusOr<ProcessSet> lower = AddProcessSet(LowerHalf());
  ASSERT_TRUE(lower.ok()) << lower.status();
  StatusOr<ProcessSet> upper = AddProcessSet(UpperHalf());
  ASSERT_TRUE(upper.ok()) << upper.status();
  const ProcessSet& mine = lower->Included() ? *lower : *upper;
  const char* hostname = std::getenv("KOLO_HOSTNAME");
  const std::string global = BackendName();
  std::printf("rank %d: global plane %s, set %d plane %s\n", Rank(),
              global.c_str(), mine.id(), mine.BackendName().c_str());
  if (hostname != nullptr && mine.Size() > 1) {
    // Pretend hosts of two ranks each: the halves are the hosts.
    EXPECT_NE(global, "shm");
    EXPECT_EQ(mine.BackendName(), "shm");
  } else if (hostname == nullptr && Size() > 1) {
    EXPECT_EQ(mine.BackendName(), global);
  }
  EXPECT_EQ((lower->Included() ? *upper : *lower).BackendName(), "");
}

TEST_F(ProcessSetTest, RankOutsideTheSetIsRefused) {
  StatusOr<ProcessSet> lower = AddProcessSet(LowerHalf());
  ASSERT_TRUE(lower.ok()) << lower.status();
  std::vector<double> x = {1.0};
  if (lower->Included()) {
    // A root outside the set.
    if (Size() > 1) {
      StatusOr<Handle> h =
          lower->BroadcastAsync("b", DoubleTensor(x), UpperHalf().front());
      ASSERT_FALSE(h.ok());
      EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(h.status().message().find("is not in process set"),
                std::string::npos)
          << h.status();
    }
    return;
  }
  StatusOr<Handle> h =
      lower->AllreduceAsync("x", DoubleTensor(x), DoubleTensor(x));
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(h.status().message().find(absl::StrCat(
                "rank ", Rank(), " is not in process set ", lower->id())),
            std::string::npos)
      << h.status();
  EXPECT_EQ(lower->Barrier().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ProcessSetTest, SetsThatDifferAcrossRanksFailEverywhere) {
  if (Size() < 3) GTEST_SKIP() << "needs three ranks";
  StatusOr<ProcessSet> set = AddProcessSet(
      Rank() == 0 ? std::vector<int>{0, 1} : std::vector<int>{0, 2});
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(set.status().message().find(
                "rank 0 asked to add a set of ranks [0, 1], rank 1 asked to "
                "add a set of ranks [0, 2]"),
            std::string::npos)
      << set.status();
  EXPECT_EQ(ProcessSets().size(), 1u);
  // The job carries on.
  StatusOr<ProcessSet> good = AddProcessSet({0, 2});
  EXPECT_TRUE(good.ok()) << good.status();
}

TEST_F(ProcessSetTest, BadRanksFailEverywhere) {
  StatusOr<ProcessSet> out_of_range = AddProcessSet({0, Size()});
  ASSERT_FALSE(out_of_range.ok());
  EXPECT_EQ(out_of_range.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out_of_range.status().message().find("is outside [0, "),
            std::string::npos);
  StatusOr<ProcessSet> twice = AddProcessSet({0, 0});
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("names rank 0 twice"),
            std::string::npos)
      << twice.status();
  EXPECT_EQ(AddProcessSet({}).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<int> everyone;
  for (int r = 0; r < Size(); ++r) everyone.push_back(r);
  EXPECT_EQ(AddProcessSet(everyone).status().code(),
            absl::StatusCode::kInvalidArgument);
  StatusOr<ProcessSet> first = AddProcessSet({0});
  ASSERT_TRUE(first.ok()) << first.status();
  StatusOr<ProcessSet> again = AddProcessSet({0});
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("already has ranks [0]"),
            std::string::npos)
      << again.status();
}

TEST_F(ProcessSetTest, UseAfterRemovalFails) {
  StatusOr<ProcessSet> lower = AddProcessSet(LowerHalf());
  ASSERT_TRUE(lower.ok()) << lower.status();
  std::vector<double> x = {1.0};
  // A pending operation (the other members never submit it) fails with
  // Cancelled when the set goes.
  StatusOr<Handle> pending;
  if (Rank() == 0) {
    pending = lower->AllreduceAsync("never", DoubleTensor(x), DoubleTensor(x));
    ASSERT_TRUE(pending.ok()) << pending.status();
  }
  ASSERT_TRUE(RemoveProcessSet(*lower).ok());
  if (Rank() == 0 && LowerHalf().size() > 1) {
    Status s = pending->Wait();
    EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  }
  StatusOr<Handle> after =
      lower->AllreduceAsync("x", DoubleTensor(x), DoubleTensor(x));
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(after.status().message().find("has been removed"),
            std::string::npos)
      << after.status();
  EXPECT_TRUE(lower->ranks().empty());
  EXPECT_EQ(lower->Size(), -1);
  Status twice = RemoveProcessSet(*lower);
  EXPECT_EQ(twice.code(), absl::StatusCode::kFailedPrecondition) << twice;
  EXPECT_EQ(RemoveProcessSet(ProcessSet()).code(),
            absl::StatusCode::kInvalidArgument);
  StatusOr<Handle> unknown = ProcessSet::FromId(999).AllreduceAsync(
      "x", DoubleTensor(x), DoubleTensor(x));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
}

class KoloEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const Status status = Init();
    ASSERT_TRUE(status.ok()) << status;
  }
  void TearDown() override { ASSERT_TRUE(Shutdown().ok()); }
};

}  // namespace
}  // namespace kolo::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new kolo::testing::KoloEnvironment);
  return RUN_ALL_TESTS();
}
