// GPU tests of the runtime: kolo's collectives on CUDA tensors (the NCCL
// backend) against kolo_bench's CPU reference, which recomputes every rank's
// inputs from a hash and reduces them in double precision without reading
// another rank's data or sharing code with kolo's kernels.
//
// Every collective x every dtype (float16 and bfloat16 included) x every
// reduction, in place and out of place; fused batches of many small tensors;
// prescale/postscale; a grouped allreduce; join (joined ranks contribute
// zeros); a CPU and a CUDA allreduce in flight together; and the stream
// contract (the runtime waits for work queued on the producer's stream).
//
// Run under mpirun with one GPU per rank (rank r uses GPU local_rank % GPUs).
// Exits 77 (ctest: skipped), saying why on every rank, when a rank sees no
// CUDA device or this host has more ranks than GPUs (NCCL refuses two ranks
// on one GPU). Built only when kolo has the NCCL backend.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/collective.h"
#include "bench/values.h"
#include "kolo/kolo.h"

namespace kolo {
namespace {

using bench::Collective;
using bench::Layout;
using bench::Part;
using bench::ValueModel;

constexpr int kSkipExitCode = 77;

const std::vector<DataType>& AllDataTypes() {
  static const std::vector<DataType> types = {
      DataType::kUint8,   DataType::kInt8,     DataType::kInt32,
      DataType::kInt64,   DataType::kFloat16,  DataType::kBfloat16,
      DataType::kFloat32, DataType::kFloat64,  DataType::kBool};
  return types;
}

const std::vector<ReduceOp>& AllReduceOps() {
  static const std::vector<ReduceOp> ops = {ReduceOp::kSum, ReduceOp::kAverage,
                                            ReduceOp::kMin, ReduceOp::kMax,
                                            ReduceOp::kProduct};
  return ops;
}

int Gpu() {
  int gpu = -1;
  cudaGetDevice(&gpu);
  return gpu;
}

// Device memory that frees itself; one byte more keeps empty buffers valid.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(int64_t bytes) : bytes_(bytes) {
    EXPECT_EQ(cudaMalloc(&data_, bytes + 1), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const { return data_; }
  void Upload(const std::vector<char>& host) const {
    ASSERT_EQ(cudaMemcpy(data_, host.data(), bytes_, cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  std::vector<char> Download() const {
    std::vector<char> host(bytes_);
    EXPECT_EQ(cudaMemcpy(host.data(), data_, bytes_, cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }

 private:
  void* data_ = nullptr;
  int64_t bytes_;
};

Tensor CudaVector(void* data, DataType dtype, int64_t count,
                  void* stream = nullptr) {
  Tensor tensor;
  tensor.data = data;
  tensor.dtype = dtype;
  tensor.shape = {count};
  tensor.device.kind = Device::kCuda;
  tensor.device.index = Gpu();
  tensor.cuda_stream = stream;
  return tensor;
}

std::byte* At(void* base, int64_t element, DataType dtype) {
  return static_cast<std::byte*>(base) + element * DataTypeSize(dtype);
}

OutputAllocator Into(void* data) {
  return [data](const std::vector<int64_t>&) -> StatusOr<void*> {
    return data;
  };
}

// A fresh name per operation, identical on every rank.
std::string NextName(const std::string& prefix) {
  static int counter = 0;
  return prefix + "." + std::to_string(counter++);
}

struct Case {
  Collective collective;
  DataType dtype;
  ReduceOp op = ReduceOp::kSum;
  int root = 0;
  bool in_place = false;
  int tensors = 1;
  int64_t count = 1031;  // elements of the message (bench's terms)
  int seed = 1;
};

std::string Describe(const Case& c) {
  return std::string(bench::CollectiveName(c.collective)) + " " +
         DataTypeName(c.dtype) + " " + ReduceOpName(c.op) + " root " +
         std::to_string(c.root) + (c.in_place ? " in place" : " out of place") +
         ", " + std::to_string(c.tensors) + " tensor(s), count " +
         std::to_string(c.count);
}

// Runs the case on CUDA buffers (each part one kolo operation, all
// submitted before any is waited on) and returns the elements of this rank's
// output that differ from the reference, or -1 with *error set.
int64_t RunCase(const Case& c, std::string* error) {
  const int ranks = Size();
  const int64_t count = bench::CountForBytes(
      c.collective, c.count * DataTypeSize(c.dtype), DataTypeSize(c.dtype),
      ranks);
  const Layout layout = bench::MakeLayout(c.collective, count, ranks, c.tensors);
  const int64_t element_size = DataTypeSize(c.dtype);
  const ValueModel model(c.dtype, bench::ValueKindFor(c.collective, c.op),
                         c.seed);
  std::vector<char> host_input(layout.input_count * element_size);
  std::vector<char> host_output(layout.output_count * element_size);
  const bool in_place = c.in_place || c.collective == Collective::kBroadcast;
  bench::Poison(c.dtype, host_output.data(), layout.output_count);
  bench::FillInput(model, Rank(), in_place ? host_output.data()
                                           : host_input.data(),
                   0, layout.input_count);
  DeviceBuffer input(host_input.size());
  DeviceBuffer output(host_output.size());
  input.Upload(host_input);
  output.Upload(host_output);
  void* source = in_place ? output.data() : input.data();

  std::vector<Handle> handles;
  for (const Part& part : layout.parts) {
    const std::string name = NextName("gpu");
    const Tensor in = CudaVector(At(source, part.input_offset, c.dtype),
                                 c.dtype, part.input_count);
    void* out = At(output.data(), part.output_offset, c.dtype);
    StatusOr<Handle> handle = absl::InternalError("no collective");
    switch (c.collective) {
      case Collective::kAllreduce:
        handle = AllreduceAsync(
            name, in, CudaVector(out, c.dtype, part.output_count),
            AllreduceOptions{c.op, 1.0, 1.0});
        break;
      case Collective::kAllgather:
        handle = AllgatherAsync(name, in, Into(out));
        break;
      case Collective::kBroadcast:
        handle = BroadcastAsync(name, CudaVector(out, c.dtype, part.output_count),
                                c.root);
        break;
      case Collective::kReducescatter:
        handle = ReducescatterAsync(name, in, Into(out), c.op);
        break;
      case Collective::kAlltoall:
        handle = AlltoallAsync(name, in, {}, Into(out));
        break;
    }
    if (!handle.ok()) {
      *error = "submission: " + handle.status().ToString();
      return -1;
    }
    handles.push_back(*handle);
  }
  for (const Handle& handle : handles) {
    const Status status = handle.Wait();
    if (!status.ok() && error->empty()) *error = status.ToString();
  }
  if (!error->empty()) return -1;
  const std::vector<char> result = output.Download();
  return bench::CountWrong(layout, model, c.op, c.root, Rank(), result.data());
}

void ExpectCorrect(const Case& c) {
  std::string error;
  const int64_t wrong = RunCase(c, &error);
  EXPECT_TRUE(error.empty()) << Describe(c) << ": " << error;
  EXPECT_EQ(wrong, 0) << Describe(c) << ": " << wrong
                      << " element(s) differ from the CPU reference on rank "
                      << Rank();
}

TEST(GpuCollectives, AllreduceEveryDtypeAndOpInAndOutOfPlace) {
  for (DataType dtype : AllDataTypes()) {
    for (ReduceOp op : AllReduceOps()) {
      if (dtype == DataType::kBool && op == ReduceOp::kAverage) continue;
      for (bool in_place : {false, true}) {
        Case c{Collective::kAllreduce, dtype, op};
        c.in_place = in_place;
        ExpectCorrect(c);
      }
    }
  }
}

TEST(GpuCollectives, ReducescatterEveryDtypeAndOp) {
  for (DataType dtype : AllDataTypes()) {
    for (ReduceOp op : AllReduceOps()) {
      if (dtype == DataType::kBool && op == ReduceOp::kAverage) continue;
      ExpectCorrect(Case{Collective::kReducescatter, dtype, op});
    }
  }
}

TEST(GpuCollectives, AllgatherBroadcastAlltoallEveryDtype) {
  for (DataType dtype : AllDataTypes()) {
    ExpectCorrect(Case{Collective::kAllgather, dtype});
    ExpectCorrect(Case{Collective::kAlltoall, dtype});
    for (int root : {0, Size() - 1}) {
      Case c{Collective::kBroadcast, dtype};
      c.root = root;
      ExpectCorrect(c);
    }
  }
}

TEST(GpuCollectives, FusedBatchesOfManySmallTensors) {
  for (Collective collective :
       {Collective::kAllreduce, Collective::kAllgather, Collective::kBroadcast,
        Collective::kReducescatter}) {
    for (DataType dtype : {DataType::kFloat32, DataType::kFloat16,
                           DataType::kBfloat16, DataType::kInt64}) {
      Case c{collective, dtype};
      c.tensors = 64;
      c.count = 64 * 13 * Size();
      ExpectCorrect(c);
    }
  }
  const RuntimeStats stats = GetStats();
  EXPECT_GT(stats.tensors_fused, 0) << "no two CUDA tensors shared a batch";
}

TEST(GpuCollectives, AverageDividesByTheRankCount) {
  for (DataType dtype : {DataType::kFloat32, DataType::kFloat64,
                         DataType::kFloat16, DataType::kBfloat16,
                         DataType::kInt32}) {
    Case c{Collective::kAllreduce, dtype, ReduceOp::kAverage};
    c.seed = 7;
    ExpectCorrect(c);
  }
}

// float16/bfloat16 <-> double on the host, for the scale test.
double Load(DataType dtype, const char* data, int64_t i) {
  switch (dtype) {
    case DataType::kFloat32: {
      float v;
      std::memcpy(&v, data + 4 * i, 4);
      return v;
    }
    case DataType::kFloat64: {
      double v;
      std::memcpy(&v, data + 8 * i, 8);
      return v;
    }
    case DataType::kFloat16: {
      _Float16 v;
      std::memcpy(&v, data + 2 * i, 2);
      return static_cast<double>(v);
    }
    case DataType::kBfloat16: {
      uint16_t bits;
      std::memcpy(&bits, data + 2 * i, 2);
      const uint32_t widened = static_cast<uint32_t>(bits) << 16;
      float v;
      std::memcpy(&v, &widened, 4);
      return v;
    }
    default:
      return 0;
  }
}

TEST(GpuCollectives, PrescaleAndPostscale) {
  constexpr int64_t kCount = 517;
  for (DataType dtype : {DataType::kFloat32, DataType::kFloat64,
                         DataType::kFloat16, DataType::kBfloat16}) {
    const ValueModel model(dtype, bench::ValueKind::kReduced, 3);
    const int64_t bytes = kCount * DataTypeSize(dtype);
    std::vector<char> host(bytes);
    bench::FillInput(model, Rank(), host.data(), 0, kCount);
    DeviceBuffer input(bytes);
    DeviceBuffer output(bytes);
    input.Upload(host);
    // 0.5 * 4 = 2: every result is an exact small integer in every dtype.
    const Status status = Allreduce(
        NextName("scale"), CudaVector(input.data(), dtype, kCount),
        CudaVector(output.data(), dtype, kCount),
        AllreduceOptions{ReduceOp::kSum, 0.5, 4.0});
    ASSERT_TRUE(status.ok()) << DataTypeName(dtype) << ": " << status;
    const std::vector<char> result = output.Download();
    for (int64_t i = 0; i < kCount; ++i) {
      double expected = 0;
      for (int r = 0; r < Size(); ++r) expected += 2 * model.Input(r, i);
      ASSERT_EQ(Load(dtype, result.data(), i), expected)
          << DataTypeName(dtype) << " index " << i;
    }
  }
}

TEST(GpuCollectives, GroupedAllreduce) {
  constexpr int kTensors = 5;
  const DataType dtype = DataType::kFloat32;
  std::vector<std::unique_ptr<DeviceBuffer>> buffers;
  std::vector<std::string> names;
  std::vector<Tensor> tensors;
  std::vector<int64_t> counts;
  const std::string group = NextName("group");
  for (int t = 0; t < kTensors; ++t) {
    const int64_t count = 1 + 97 * t;
    const ValueModel model(dtype, bench::ValueKind::kReduced, 10 + t);
    std::vector<char> host(count * 4);
    bench::FillInput(model, Rank(), host.data(), 0, count);
    buffers.push_back(std::make_unique<DeviceBuffer>(count * 4));
    buffers.back()->Upload(host);
    names.push_back(group + "." + std::to_string(t));
    tensors.push_back(CudaVector(buffers.back()->data(), dtype, count));
    counts.push_back(count);
  }
  StatusOr<Handle> handle = GroupedAllreduceAsync(
      names, tensors, tensors, AllreduceOptions{ReduceOp::kSum, 1.0, 1.0});
  ASSERT_TRUE(handle.ok()) << handle.status();
  ASSERT_TRUE(handle->Wait().ok());
  for (int t = 0; t < kTensors; ++t) {
    const ValueModel model(dtype, bench::ValueKind::kReduced, 10 + t);
    const Layout layout =
        bench::MakeLayout(Collective::kAllreduce, counts[t], Size(), 1);
    const std::vector<char> result = buffers[t]->Download();
    EXPECT_EQ(bench::CountWrong(layout, model, ReduceOp::kSum, 0, Rank(),
                                result.data()),
              0)
        << "tensor " << t;
  }
}

TEST(GpuCollectives, JoinedRanksContributeZeros) {
  if (Size() < 2) GTEST_SKIP() << "join needs at least 2 ranks";
  constexpr int64_t kCount = 301;
  const DataType dtype = DataType::kFloat32;
  const ValueModel model(dtype, bench::ValueKind::kReduced, 5);
  DeviceBuffer buffer(kCount * 4);
  if (Rank() == 0) {
    std::vector<char> host(kCount * 4);
    bench::FillInput(model, 0, host.data(), 0, kCount);
    buffer.Upload(host);
    const Status status =
        Allreduce("gpu.join", CudaVector(buffer.data(), dtype, kCount),
                  CudaVector(buffer.data(), dtype, kCount),
                  AllreduceOptions{ReduceOp::kSum, 1.0, 1.0});
    ASSERT_TRUE(status.ok()) << status;
    const std::vector<char> result = buffer.Download();
    for (int64_t i = 0; i < kCount; ++i) {
      ASSERT_EQ(Load(dtype, result.data(), i), model.Input(0, i))
          << "index " << i << ": the joined ranks must add zeros";
    }
  }
  StatusOr<int> last = Join();
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(*last, 0);
}

TEST(GpuCollectives, CpuAndCudaTensorsInOneStep) {
  constexpr int64_t kCount = 4099;
  const ValueModel model(DataType::kFloat32, bench::ValueKind::kReduced, 9);
  const Layout layout =
      bench::MakeLayout(Collective::kAllreduce, kCount, Size(), 1);
  std::vector<char> host(kCount * 4);
  bench::FillInput(model, Rank(), host.data(), 0, kCount);
  std::vector<char> cpu_output(kCount * 4);
  DeviceBuffer gpu(kCount * 4);
  gpu.Upload(host);
  Tensor cpu_in;
  cpu_in.data = host.data();
  cpu_in.dtype = DataType::kFloat32;
  cpu_in.shape = {kCount};
  Tensor cpu_out = cpu_in;
  cpu_out.data = cpu_output.data();
  const AllreduceOptions sum{ReduceOp::kSum, 1.0, 1.0};
  StatusOr<Handle> cuda_handle =
      AllreduceAsync("gpu.mixed.cuda", CudaVector(gpu.data(), DataType::kFloat32,
                                                  kCount),
                     CudaVector(gpu.data(), DataType::kFloat32, kCount), sum);
  StatusOr<Handle> cpu_handle =
      AllreduceAsync("gpu.mixed.cpu", cpu_in, cpu_out, sum);
  ASSERT_TRUE(cuda_handle.ok()) << cuda_handle.status();
  ASSERT_TRUE(cpu_handle.ok()) << cpu_handle.status();
  ASSERT_TRUE(cuda_handle->Wait().ok());
  ASSERT_TRUE(cpu_handle->Wait().ok());
  const std::vector<char> gpu_result = gpu.Download();
  EXPECT_EQ(bench::CountWrong(layout, model, ReduceOp::kSum, 0, Rank(),
                              gpu_result.data()),
            0)
      << "CUDA tensor";
  EXPECT_EQ(bench::CountWrong(layout, model, ReduceOp::kSum, 0, Rank(),
                              cpu_output.data()),
            0)
      << "CPU tensor";
}

// The input is written by a memset queued on the producer's stream behind a
// host callback that sleeps: unless the runtime waits for that stream (the
// event recorded at submission), it reads the zeros that were there before.
TEST(GpuCollectives, WaitsForTheProducerStream) {
  constexpr int64_t kBytes = 1 << 20;
  DeviceBuffer buffer(kBytes);
  ASSERT_EQ(cudaMemset(buffer.data(), 0, kBytes), cudaSuccess);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
            cudaSuccess);
  ASSERT_EQ(cudaLaunchHostFunc(
                stream, [](void*) { ::usleep(300 * 1000); }, nullptr),
            cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(buffer.data(), 1, kBytes, stream), cudaSuccess);
  const Tensor tensor =
      CudaVector(buffer.data(), DataType::kUint8, kBytes, stream);
  const Status status = Allreduce("gpu.stream", tensor, tensor,
                                  AllreduceOptions{ReduceOp::kSum, 1.0, 1.0});
  ASSERT_TRUE(status.ok()) << status;
  // After completion the result is in device memory for any stream; the
  // legacy stream's copy does not wait for `stream`.
  const std::vector<char> result = buffer.Download();
  for (int64_t i = 0; i < kBytes; i += 4097) {
    ASSERT_EQ(static_cast<int>(static_cast<unsigned char>(result[i])), Size())
        << "byte " << i << ": the allreduce ran before the producer's memset";
  }
  cudaStreamSynchronize(stream);
  cudaStreamDestroy(stream);
}

// Why this rank cannot run the tests, or empty.
std::string WhyNoGpu() {
  int gpus = 0;
  const cudaError_t error = cudaGetDeviceCount(&gpus);
  if (error != cudaSuccess) {
    return std::string("no CUDA device is visible (cudaGetDeviceCount: ") +
           cudaGetErrorString(error) + ")";
  }
  if (gpus == 0) return "no CUDA device is visible (0 devices)";
  if (LocalSize() > gpus) {
    return std::to_string(LocalSize()) + " ranks on this host but " +
           std::to_string(gpus) +
           " GPU(s): NCCL needs one GPU per rank (run with -np <= GPUs)";
  }
  if (cudaError_t set = cudaSetDevice(LocalRank() % gpus); set != cudaSuccess) {
    return std::string("cudaSetDevice: ") + cudaGetErrorString(set);
  }
  return "";
}

}  // namespace
}  // namespace kolo

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const kolo::Status init = kolo::Init();
  if (!init.ok()) {
    std::fprintf(stderr, "kolo::Init failed: %s\n", init.ToString().c_str());
    return 1;
  }
  // Every rank skips if any must, so that no rank waits for the others.
  const std::string why = kolo::WhyNoGpu();
  int32_t skip = why.empty() ? 0 : 1;
  kolo::Tensor flag;
  flag.data = &skip;
  flag.dtype = kolo::DataType::kInt32;
  const kolo::Status agreed =
      kolo::Allreduce("gpu.skip", flag, flag,
                      kolo::AllreduceOptions{kolo::ReduceOp::kMax, 1.0, 1.0});
  if (!agreed.ok()) {
    std::fprintf(stderr, "agreeing on the skip failed: %s\n",
                 agreed.ToString().c_str());
    return 1;
  }
  if (skip != 0) {
    std::printf("[  SKIPPED ] GPU collective tests, rank %d of %d: %s\n",
                kolo::Rank(), kolo::Size(),
                why.empty() ? "another rank cannot run them" : why.c_str());
    std::fflush(stdout);
    kolo::Shutdown().IgnoreError();
    return kolo::kSkipExitCode;
  }
  std::printf("GPU collective tests: rank %d of %d on GPU %d\n", kolo::Rank(),
              kolo::Size(), kolo::Gpu());
  const int result = RUN_ALL_TESTS();
  kolo::Shutdown().IgnoreError();
  return result;
}
