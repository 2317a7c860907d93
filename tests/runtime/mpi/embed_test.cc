// kolo inside an application that already initialised MPI: kolo uses
// MPI_COMM_WORLD, leaves MPI_Finalize to the application, and can be
// restarted while MPI lives.
#include <mpi.h>

#include <cstdio>
#include <vector>

#include "kolo/kolo.h"

namespace {

int Check(bool ok, const char* what) {
  if (!ok) std::fprintf(stderr, "embed_test: %s failed\n", what);
  return ok ? 0 : 1;
}

int RunOnce(int round) {
  int failures = Check(kolo::Init().ok(), "kolo::Init");
  int world_rank = 0;
  int world_size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  failures += Check(kolo::Rank() == world_rank, "rank equals MPI_COMM_WORLD's");
  failures += Check(kolo::Size() == world_size, "size equals MPI_COMM_WORLD's");
  std::vector<int64_t> x(5, world_rank + round);
  kolo::Tensor t{x.data(), kolo::DataType::kInt64, {5}};
  kolo::AllreduceOptions sum;
  sum.op = kolo::ReduceOp::kSum;
  failures += Check(kolo::Allreduce("embed.x", t, t, sum).ok(), "allreduce");
  const int64_t expected =
      int64_t{world_size} * (world_size - 1) / 2 + int64_t{world_size} * round;
  failures += Check(x[4] == expected, "allreduce value");
  failures += Check(kolo::Shutdown().ok(), "kolo::Shutdown");
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int failures = RunOnce(0);
  failures += RunOnce(1);  // kolo restarts while the application owns MPI
  // MPI is still usable by the application after kolo shut down.
  int one = 1;
  int total = 0;
  int world_size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  MPI_Allreduce(&one, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  failures += Check(total == world_size, "MPI after kolo");
  int finalized = 1;
  MPI_Finalized(&finalized);
  failures += Check(!finalized, "kolo left MPI_Finalize to the application");
  MPI_Finalize();
  if (failures == 0) std::printf("embed_test passed\n");
  return failures == 0 ? 0 : 1;
}
