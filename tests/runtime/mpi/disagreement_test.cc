// Ranks that disagree, driven by tests/runtime/disagreement_test.sh:
//   init       kolo_init with whatever environment each rank was given; then
//              a fused batch of allreduces checked against the exact sum.
//              Prints "init-failed CODE MESSAGE" or "init-ok" and
//              "values-ok" / "values-WRONG ...".
//   allocator  after a good allreduce, rank 1's output allocator fails in an
//              allgather: prints "allgather-status RANK CODE MESSAGE" per
//              rank. No rank may report success for it.
//   names      names kolo reserves or cannot carry are refused on the
//              submitting rank alone, and the job goes on: prints
//              "names-ok" per rank.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kolo/kolo.h"

namespace {

int Init() {
  const kolo::Status status = kolo::Init();
  if (!status.ok()) {
    std::printf("init-failed %d %s\n", static_cast<int>(status.code()),
                std::string(status.message()).c_str());
    return static_cast<int>(status.code());
  }
  std::printf("init-ok rank %d\n", kolo::Rank());
  return 0;
}

// 64 allreduces of 1000 floats submitted together (fused); every element
// must equal the sum over ranks of rank + tensor index + 1.
bool FusedValuesRight() {
  const int size = kolo::Size();
  const int rank = kolo::Rank();
  std::vector<std::vector<float>> data(64, std::vector<float>(1000));
  std::vector<kolo::Handle> handles;
  for (int i = 0; i < 64; ++i) {
    for (float& x : data[i]) x = static_cast<float>(rank + i + 1);
    kolo::Tensor t{data[i].data(), kolo::DataType::kFloat32, {1000}};
    kolo::AllreduceOptions sum;
    sum.op = kolo::ReduceOp::kSum;
    auto handle = kolo::AllreduceAsync(absl::StrCat("fused.", i), t, t, sum);
    if (!handle.ok()) return false;
    handles.push_back(*handle);
  }
  bool right = true;
  for (int i = 0; i < 64; ++i) {
    const kolo::Status s = handles[i].Wait();
    const float expected =
        static_cast<float>(size * (size - 1) / 2 + size * (i + 1));
    if (!s.ok()) {
      std::printf("values-FAILED rank %d tensor %d: %s\n", rank, i,
                  s.ToString().c_str());
      return false;
    }
    for (int j = 0; j < 1000 && right; ++j) {
      if (data[i][j] != expected) {
        std::printf(
            "values-WRONG rank %d tensor %d element %d: expected %g "
            "got %g\n",
            rank, i, j, expected, data[i][j]);
        right = false;
      }
    }
  }
  return right;
}

int InitMode() {
  if (int code = Init(); code != 0) return code;
  const bool right = FusedValuesRight();
  if (right) std::printf("values-ok rank %d\n", kolo::Rank());
  kolo::Shutdown();
  return right ? 0 : 1;
}

int AllocatorMode() {
  if (int code = Init(); code != 0) return code;
  const int rank = kolo::Rank();
  std::vector<float> value(16, 1.0f);
  kolo::Tensor t{value.data(), kolo::DataType::kFloat32, {16}};
  if (!kolo::Allreduce("warm-up", t, t).ok()) return 1;
  std::vector<float> gathered;
  auto handle = kolo::AllgatherAsync(
      "gather", t,
      [&](const std::vector<int64_t>& shape) -> kolo::StatusOr<void*> {
        if (rank == 1) {
          return absl::ResourceExhaustedError("the test's allocator refuses");
        }
        gathered.resize(shape[0]);
        return static_cast<void*>(gathered.data());
      });
  kolo::Status status = handle.ok() ? handle->Wait() : handle.status();
  std::printf("allgather-status %d %d %s\n", rank,
              static_cast<int>(status.code()),
              std::string(status.message()).c_str());
  std::fflush(stdout);
  kolo::Shutdown();
  // The script judges the printed statuses; a non-zero exit here would let
  // mpirun kill the other ranks before they print theirs.
  return 0;
}

int NamesMode() {
  if (int code = Init(); code != 0) return code;
  const int rank = kolo::Rank();
  std::vector<float> value(4, 1.0f);
  kolo::Tensor t{value.data(), kolo::DataType::kFloat32, {4}};
  bool ok = true;
  auto refused = [&](const kolo::StatusOr<kolo::Handle>& h, const char* what) {
    if (h.ok() || h.status().code() != absl::StatusCode::kInvalidArgument) {
      std::printf("names-WRONG rank %d: %s was not refused: %s\n", rank, what,
                  h.ok() ? "accepted" : h.status().ToString().c_str());
      ok = false;
    }
  };
  // Only rank 1 tries the bad names; the others go straight on.
  if (rank == 1) {
    refused(kolo::AllreduceAsync("kolo.join", t, t), "the join tensor's name");
    refused(kolo::AllreduceAsync("kolo.barrier.0", t, t), "a barrier's name");
    refused(kolo::AllreduceAsync(std::string(70000, 'n'), t, t),
            "a 70000-byte name");
    kolo::Tensor deep{value.data(), kolo::DataType::kFloat32,
                      std::vector<int64_t>(65, 1)};
    refused(kolo::AllreduceAsync("deep", deep, deep), "65 dimensions");
  }
  kolo::AllreduceOptions sum;
  sum.op = kolo::ReduceOp::kSum;
  const kolo::Status after = kolo::Allreduce("after", t, t, sum);
  if (!after.ok() || value[0] != static_cast<float>(kolo::Size())) {
    std::printf("names-WRONG rank %d: the job did not go on: %s\n", rank,
                after.ToString().c_str());
    ok = false;
  }
  if (ok) std::printf("names-ok rank %d\n", rank);
  kolo::Shutdown();
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "init";
  int code = 1;
  if (mode == "init") code = InitMode();
  if (mode == "allocator") code = AllocatorMode();
  if (mode == "names") code = NamesMode();
  std::fflush(stdout);
  return code;
}
