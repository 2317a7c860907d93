// kolo inside an application that initialised MPI at a given thread level:
// below MPI_THREAD_SERIALIZED kolo::Init() refuses, naming the level (kolo's
// background thread calls MPI, which the application promised MPI no thread
// but its main one would); at SERIALIZED and MULTIPLE it starts and reduces
// correctly. With "kolo", kolo initialises MPI itself and must be granted
// MULTIPLE (Open MPI and MPICH both grant it). Same verdicts under both MPIs.
// usage: thread_level_test single|funneled|serialized|multiple|kolo
#include <mpi.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kolo/kolo.h"

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "thread_level_test: FAIL: %s\n", what.c_str());
  return 1;
}

// Sums every rank's (rank + 1) through kolo; 0 when right.
int AllreduceWorks() {
  std::vector<int32_t> x(7, kolo::Rank() + 1);
  kolo::Tensor t{x.data(), kolo::DataType::kInt32, {7}};
  kolo::AllreduceOptions sum;
  sum.op = kolo::ReduceOp::kSum;
  kolo::Status s = kolo::Allreduce("thread_level.x", t, t, sum);
  if (!s.ok()) return Fail(s.ToString());
  const int n = kolo::Size();
  if (x[6] != n * (n + 1) / 2) return Fail("wrong allreduce result");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return Fail("usage: thread_level_test LEVEL");
  const std::string level = argv[1];
  if (level == "kolo") {
    kolo::Status s = kolo::Init();
    if (!s.ok()) return Fail(s.ToString());
    int provided = -1;
    MPI_Query_thread(&provided);
    if (provided != MPI_THREAD_MULTIPLE) {
      return Fail("kolo's own MPI_Init_thread did not get MPI_THREAD_MULTIPLE");
    }
    int failures = AllreduceWorks();
    if (!kolo::Shutdown().ok()) failures += Fail("kolo::Shutdown");
    if (failures == 0) std::printf("thread_level_test kolo: passed\n");
    return failures;
  }
  const struct {
    const char* name;
    int level;
    bool accepted;
  } kLevels[] = {{"single", MPI_THREAD_SINGLE, false},
                 {"funneled", MPI_THREAD_FUNNELED, false},
                 {"serialized", MPI_THREAD_SERIALIZED, true},
                 {"multiple", MPI_THREAD_MULTIPLE, true}};
  for (const auto& l : kLevels) {
    if (level != l.name) continue;
    int provided = -1;
    MPI_Init_thread(&argc, &argv, l.level, &provided);
    if (provided != l.level) return Fail("MPI granted another level");
    int failures = 0;
    kolo::Status s = kolo::Init();
    if (l.accepted) {
      if (!s.ok()) {
        failures += Fail(s.ToString());
      } else {
        failures += AllreduceWorks();
        if (!kolo::Shutdown().ok()) failures += Fail("kolo::Shutdown");
      }
    } else {
      const std::string upper = std::string("MPI_THREAD_") +
                                (level == "single" ? "SINGLE" : "FUNNELED");
      if (s.ok()) {
        failures += Fail("kolo::Init accepted " + upper);
        (void)kolo::Shutdown();
      } else if (s.code() != absl::StatusCode::kFailedPrecondition ||
                 s.message().find("initialised MPI at " + upper) ==
                     std::string::npos) {
        failures += Fail("unexpected error: " + s.ToString());
      }
    }
    MPI_Finalize();
    if (failures == 0) std::printf("thread_level_test %s: passed\n", l.name);
    return failures;
  }
  return Fail("unknown level '" + level + "'");
}
