// kolo/options.h: the runtime's tunables. Init() fills them from the KOLO_*
// environment (read once; a malformed value is an error naming the variable);
// InitWithOptions() takes them directly.
#ifndef KOLO_OPTIONS_H_
#define KOLO_OPTIONS_H_

#include <cstdint>
#include <string>

#include "kolo/status.h"

namespace kolo {

enum class LogLevel : int { kTrace, kDebug, kInfo, kWarning, kError };

// Which CPU data plane runs the collectives.
enum class CpuOperations : int {
  kAuto,          // the fastest one available for this job's topology
  kShm,           // shared memory; every rank on one host
  kRing,          // ring algorithms over point-to-point transports
  kHierarchical,  // shared memory inside hosts, ring across hosts
  kMpi,           // Open MPI's collectives (the reference)
};

// The transport of the ring algorithms (ring and hierarchical planes).
enum class RingTransport : int {
  kTcp,  // sockets, one authenticated connection per pair of ranks
  kMpi,  // MPI point-to-point on a dedicated communicator
};

// How CUDA tensors are reduced (builds with NCCL only).
// KOLO_MEMORY_ALLOCATOR (kolorun --memory-allocator; kolo/memory.h).
enum class MemoryAllocator : int {
  kAuto,      // tcmalloc when installed, else glibc tuned
  kTcmalloc,  // preloaded by kolorun
  kJemalloc,  // preloaded by kolorun
  kGlibc,     // glibc tuned through MALLOC_* variables
  kSystem,    // left alone; TuneMemoryAllocator() does nothing either
};

enum class GpuOperations : int {
  kAuto,          // nccl on one host; hierarchical on several hosts with the
                  // same number of ranks each; nccl otherwise
  kNccl,          // NCCL collectives over every rank
  kHierarchical,  // allreduce: NCCL inside each host, the CPU data plane
                  // across hosts (on a host staging buffer); the other
                  // collectives as kNccl
};

// Options::thread_nice when KOLO_THREAD_NICE is not set.
inline constexpr int64_t kThreadNiceUnset = 100;

struct Options {
  // KOLO_FUSION_THRESHOLD: bytes of the persistent fusion buffer. Larger
  // values batch more small tensors into one collective (fewer latencies) at
  // the cost of memory; 0 disables fusion. Default 64 MiB.
  int64_t fusion_threshold_bytes = int64_t{64} << 20;
  // KOLO_CYCLE_TIME_MS: the longest a rank waits before it reports queued
  // work or looks for the coordinator's answer. Smaller reacts faster and
  // wakes more often. Default 1 ms.
  double cycle_time_ms = 1.0;
  // KOLO_PRIORITY_CYCLE_BYTES: while ready allreduces carry priorities
  // (AllreduceOptions::priority), the most bytes of them rank 0 puts in one
  // response list (at least one tensor), highest priority first; the rest
  // wait for the next list. Smaller lets urgent tensors overtake a backlog
  // sooner, at one negotiation round per list. 0: no limit (priorities only
  // order each list). Default 4 MiB.
  int64_t priority_cycle_bytes = int64_t{4} << 20;
  // KOLO_CACHE_CAPACITY: response-cache entries; tensors seen before are
  // agreed with one bit instead of a full request. 0 disables. Default 1024.
  int64_t cache_capacity = 1024;
  // KOLO_TIMELINE: Chrome-trace JSON written by rank 0; empty = off.
  std::string timeline_path;
  // KOLO_TIMELINE_MARK_CYCLES: add a marker per negotiation round.
  bool timeline_mark_cycles = false;
  // KOLO_STALL_CHECK_TIME_SECONDS: after this long, rank 0 reports tensors
  // that some ranks submitted and others did not. 0 disables. Default 60.
  double stall_check_seconds = 60;
  // KOLO_STALL_SHUTDOWN_TIME_SECONDS: after this long such a tensor fails
  // with DeadlineExceeded on every rank. 0 disables. Default 300.
  double stall_shutdown_seconds = 300;
  // KOLO_CPU_OPERATIONS: auto, shm, ring, hierarchical or mpi. Default auto.
  CpuOperations cpu_operations = CpuOperations::kAuto;
  // KOLO_LOG_LEVEL: trace, debug, info, warning or error. Default warning.
  LogLevel log_level = LogLevel::kWarning;
  // KOLO_AUTOTUNE: tune fusion threshold and cycle time online. Default off.
  bool autotune = false;
  // KOLO_SHM_SLOT_BYTES: each of a rank's two shared-memory slots. Larger
  // slots mean fewer barriers per collective; smaller ones keep a round's
  // data in cache. At least 4 KiB per local rank. Default 512 KiB.
  int64_t shm_slot_bytes = int64_t{512} << 10;
  // KOLO_SHM_SINGLE_COPY_BYTES: on one host, broadcasts and allgathers of
  // at least this many bytes (the largest rank's part), and the larger
  // parts of alltoalls, are read straight from the peer's buffer with
  // process_vm_readv (one copy instead of two through the slots), where
  // the kernel allows it (else kolo keeps two copies, logged at info).
  // Worth it only where the kernel's copy between processes is about as
  // fast as memcpy (bench/shm_copy_bench tells); on kolo's test VM it is
  // 4-5x slower. 0 turns it off. Default 0.
  int64_t shm_single_copy_bytes = 0;
  // KOLO_PEER_TIMEOUT_SECONDS: a rank that sends nothing (not even its
  // half-second heartbeat) for this long while kolo is idle is taken for
  // dead, and every rank fails with Aborted. Default 5.
  double peer_timeout_seconds = 5;
  // KOLO_GPU_OPERATIONS: auto, nccl or hierarchical (see GpuOperations).
  // Ignored by builds without NCCL. Default auto.
  GpuOperations gpu_operations = GpuOperations::kAuto;
  // KOLO_FAST_LANE: when every rank is on one host, tensors negotiated
  // before (collectives of CPU tensors, not grouped) are agreed in
  // shared memory without rank 0, and run on the thread that waits for
  // them. Off while KOLO_AUTOTUNE tunes the negotiation through rank 0.
  // Default on.
  bool fast_lane = true;
  // KOLO_THREAD_NICE: the nice value kolo's background thread asks for
  // (-20 to 19). A higher priority than the compute threads' lets it answer
  // its peers at once on hosts whose cores the ranks oversubscribe (the
  // link idles otherwise while it waits for a time slice). Lowering the
  // value below the process's needs root, CAP_SYS_NICE or RLIMIT_NICE;
  // where that is refused the thread keeps the process's (logged at info).
  // Unset (kThreadNiceUnset, the default): the thread keeps the process's
  // nice value. -10 sped up training on an emulated cluster with two ranks
  // per core, but runs with it twice saw a rank time out on rank 0 during
  // the initial broadcast (README, Status).
  int64_t thread_nice = kThreadNiceUnset;
  // KOLO_RING_TRANSPORT: tcp or mpi. Default tcp.
  RingTransport ring_transport = RingTransport::kTcp;
  // KOLO_TCP_IFACE: the one network interface whose IPv4 addresses the TCP
  // transport and the networked doorbells publish and listen on; empty =
  // every interface that is up (loopback only for ranks on one host).
  std::string tcp_iface;
  // KOLO_HOSTNAME: the host name this rank reports; ranks with the same name
  // are on one host (pretend hosts on one machine, for tests). Empty =
  // gethostname().
  std::string hostname;
  // KOLO_MEMORY_ALLOCATOR: the process's malloc (kolo/memory.h). Default
  // auto.
  MemoryAllocator memory_allocator = MemoryAllocator::kAuto;
  // Elastic mode (kolorun --host-discovery-script or --max-restarts; set by
  // kolorun, read by the program through kolo/elastic.h):
  // KOLO_ELASTIC_RESTART: how many times kolorun has relaunched the job.
  int64_t elastic_restart = 0;
  // KOLO_ELASTIC_STOP_FILE: the host-local file whose existence asks the
  // job to stop at its next step boundary; empty outside elastic mode.
  std::string elastic_stop_file;
};

// The largest values kolo accepts (init fails above them, naming the
// variable): more would only exhaust memory or overflow arithmetic.
inline constexpr int64_t kMaxFusionThresholdBytes = int64_t{16} << 30;
inline constexpr int64_t kMaxShmSlotBytes = int64_t{1} << 30;
inline constexpr int64_t kMaxCacheCapacity = int64_t{1} << 20;
inline constexpr double kMaxCycleTimeMs = 60000;
inline constexpr double kMaxSeconds = 7 * 24 * 3600;
inline constexpr int64_t kMaxElasticRestart = 1 << 30;

// Reads the KOLO_* environment over the defaults above.
StatusOr<Options> OptionsFromEnvironment();

const char* CpuOperationsName(CpuOperations value);
const char* GpuOperationsName(GpuOperations value);
const char* RingTransportName(RingTransport value);
const char* MemoryAllocatorName(MemoryAllocator value);

}  // namespace kolo

#endif  // KOLO_OPTIONS_H_
