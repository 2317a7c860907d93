/* kolo C API: the stable, C-compatible entry points of the kolo runtime.
 *
 * Every int-returning call returns 0 on success, otherwise an absl::StatusCode
 * value (3 invalid argument, 4 deadline exceeded, 9 failed precondition e.g. a
 * cross-rank mismatch, 10 aborted e.g. a peer failed, 1 cancelled e.g. after
 * shutdown, 13 internal ...). kolo_last_error() returns the calling thread's
 * last error message (never NULL; "" after a success).
 *
 * Thread safety: every function may be called from any thread. Operations are
 * asynchronous: an *_async call enqueues the operation and returns a handle;
 * kolo_wait blocks (without spinning) until it completes and releases the
 * handle; kolo_poll never blocks. Every handle must be waited on exactly once.
 *
 * Ranks may submit operations in any order; an operation runs once every rank
 * has submitted the same name. Names must be unique among the pending
 * operations of a rank. Buffers must stay valid until kolo_wait returns.
 */
#ifndef KOLO_C_API_H_
#define KOLO_C_API_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  KOLO_UINT8 = 0,
  KOLO_INT8 = 1,
  KOLO_INT32 = 2,
  KOLO_INT64 = 3,
  KOLO_FLOAT16 = 4,
  KOLO_BFLOAT16 = 5,
  KOLO_FLOAT32 = 6,
  KOLO_FLOAT64 = 7,
  KOLO_BOOL = 8
} kolo_dtype;

typedef enum {
  KOLO_SUM = 0,
  KOLO_AVERAGE = 1,
  KOLO_MIN = 2,
  KOLO_MAX = 3,
  KOLO_PRODUCT = 4,
  /* Adaptive summation (Maleki et al.): float tensors on the CPU planes, a
     power-of-two number of ranks, allreduce only. See kolo/types.h. */
  KOLO_ADASUM = 5
} kolo_reduce_op;

typedef int64_t kolo_handle;

/* Starts the runtime (and MPI unless the application already initialised it).
   Reads the KOLO_* environment; a malformed value fails with code 3 and a
   message naming the variable. Calling it again while initialised is a no-op. */
int kolo_init(void);
/* Stops the runtime on every rank: pending operations fail with code 1. */
int kolo_shutdown(void);
int kolo_is_initialized(void);
/* Topology; -1 before kolo_init. */
int kolo_rank(void);
int kolo_size(void);
int kolo_local_rank(void);
int kolo_local_size(void);
int kolo_cross_rank(void);
int kolo_cross_size(void);
const char* kolo_last_error(void);
/* The CPU data plane kolo_init chose: "shm", "ring", "hierarchical" or "mpi"
   ("" before kolo_init). Valid until the next call on this thread. */
const char* kolo_backend_name(void);
/* The MPI library kolo is built against, e.g. "Open MPI 4.1.4" or
   "MPICH 4.0.2". Callable before kolo_init; never NULL. */
const char* kolo_mpi_library(void);

/* input may equal output (in place). count is in elements. */
int kolo_allreduce_async(const char* name, const void* input, void* output,
                         int64_t count, kolo_dtype dtype, kolo_reduce_op op,
                         kolo_handle* handle);
/* Allreduce with scale factors: output = postscale * reduce(prescale * x). */
int kolo_allreduce_scaled_async(const char* name, const void* input,
                                void* output, int64_t count, kolo_dtype dtype,
                                kolo_reduce_op op, double prescale,
                                double postscale, kolo_handle* handle);
/* All-or-nothing allreduce of n tensors: they run together or fail together.
   names, inputs, outputs and counts have n entries; one handle for the group. */
int kolo_grouped_allreduce_async(int n, const char* const* names,
                                 const void* const* inputs,
                                 void* const* outputs, const int64_t* counts,
                                 kolo_dtype dtype, kolo_reduce_op op,
                                 kolo_handle* handle);
int kolo_broadcast_async(const char* name, void* buffer, int64_t count,
                         kolo_dtype dtype, int root_rank, kolo_handle* handle);
/* Concatenates every rank's input (count may differ per rank) in rank order.
   kolo allocates the result; once kolo_wait returns 0, *output and
   *output_count hold it; release it with kolo_free. */
int kolo_allgather_async(const char* name, const void* input, int64_t count,
                         kolo_dtype dtype, void** output,
                         int64_t* output_count, kolo_handle* handle);
/* All-or-nothing allgather of n tensors (each as kolo_allgather_async; they
   run together or fail together, fused when they fit; one handle). Every rank
   groups the same names; a group whose names differ between ranks fails on
   every rank (code 9). Once kolo_wait returns 0, outputs[i] and
   output_counts[i] hold tensor i's result; release each with kolo_free. */
int kolo_grouped_allgather_async(int n, const char* const* names,
                                 const void* const* inputs,
                                 const int64_t* counts, kolo_dtype dtype,
                                 void** outputs, int64_t* output_counts,
                                 kolo_handle* handle);
/* Sends send_counts[j] elements (consecutive, in rank order) to rank j; NULL
   send_counts splits count evenly (count must divide by the size). Once
   kolo_wait returns 0, *output holds what every rank sent here, in rank order,
   and recv_counts (size entries, may be NULL) how many came from each rank. */
int kolo_alltoall_async(const char* name, const void* input, int64_t count,
                        kolo_dtype dtype, const int64_t* send_counts,
                        void** output, int64_t* output_count,
                        int64_t* recv_counts, kolo_handle* handle);
/* Reduces every rank's input (count elements) and leaves rank r its share:
   count / size elements, the first count % size ranks one more. output must
   hold that many; *output_count receives it. */
int kolo_reducescatter_async(const char* name, const void* input,
                             void* output, int64_t* output_count,
                             int64_t count, kolo_dtype dtype,
                             kolo_reduce_op op, kolo_handle* handle);
/* All-or-nothing reducescatter of n tensors (each as
   kolo_reducescatter_async, all or nothing as kolo_grouped_allgather_async):
   outputs[i] must hold tensor i's share of counts[i] elements;
   output_counts[i] receives it. */
int kolo_grouped_reducescatter_async(int n, const char* const* names,
                                     const void* const* inputs,
                                     void* const* outputs,
                                     int64_t* output_counts,
                                     const int64_t* counts, kolo_dtype dtype,
                                     kolo_reduce_op op, kolo_handle* handle);
/* Blocks until every rank has entered the barrier. */
int kolo_barrier(void);
/* This rank has no more data: it contributes zeros to other ranks'
   allreduces until every rank has joined. Blocks; *last_rank (may be NULL)
   receives the rank that joined last. */
int kolo_join(int* last_rank);

/* Process sets (kolo/process_set.h): collectives among a subset of the
   ranks, each set with its own negotiation and data plane. Adding and
   removing are collective over every rank of the job, each passing the same
   ranks (global ranks, any order); a set that differs across ranks fails on
   every rank (code 9). Ids are the same on every rank; 0 is the global set.
   Submitting to a set this rank is not in fails with 3, to a removed set
   with 9. */
int kolo_add_process_set(const int* ranks, int n, int* process_set);
int kolo_remove_process_set(int process_set);
/* This rank's position in the set; -1 when not a member or no such set. */
int kolo_process_set_rank(int process_set);
/* Members in the set; -1 when there is no such set. */
int kolo_process_set_size(int process_set);
/* Copies up to capacity member ranks (global, ascending) into ranks and
   returns the number of members; -1 when there is no such set. */
int kolo_process_set_ranks(int process_set, int* ranks, int capacity);
/* The collectives above within a process set: the same arguments after
   process_set. Ranks are global (a broadcast's root must be a member);
   alltoall's send_counts and recv_counts have one entry per member, in
   global-rank order; join's last_rank is a global rank. */
int kolo_process_set_allreduce_async(int process_set, const char* name,
                                     const void* input, void* output,
                                     int64_t count, kolo_dtype dtype,
                                     kolo_reduce_op op, kolo_handle* handle);
int kolo_process_set_allreduce_scaled_async(
    int process_set, const char* name, const void* input, void* output,
    int64_t count, kolo_dtype dtype, kolo_reduce_op op, double prescale,
    double postscale, kolo_handle* handle);
int kolo_process_set_grouped_allreduce_async(
    int process_set, int n, const char* const* names,
    const void* const* inputs, void* const* outputs, const int64_t* counts,
    kolo_dtype dtype, kolo_reduce_op op, kolo_handle* handle);
int kolo_process_set_broadcast_async(int process_set, const char* name,
                                     void* buffer, int64_t count,
                                     kolo_dtype dtype, int root_rank,
                                     kolo_handle* handle);
int kolo_process_set_allgather_async(int process_set, const char* name,
                                     const void* input, int64_t count,
                                     kolo_dtype dtype, void** output,
                                     int64_t* output_count,
                                     kolo_handle* handle);
int kolo_process_set_grouped_allgather_async(
    int process_set, int n, const char* const* names,
    const void* const* inputs, const int64_t* counts, kolo_dtype dtype,
    void** outputs, int64_t* output_counts, kolo_handle* handle);
int kolo_process_set_alltoall_async(int process_set, const char* name,
                                    const void* input, int64_t count,
                                    kolo_dtype dtype,
                                    const int64_t* send_counts, void** output,
                                    int64_t* output_count,
                                    int64_t* recv_counts, kolo_handle* handle);
int kolo_process_set_reducescatter_async(int process_set, const char* name,
                                         const void* input, void* output,
                                         int64_t* output_count, int64_t count,
                                         kolo_dtype dtype, kolo_reduce_op op,
                                         kolo_handle* handle);
int kolo_process_set_grouped_reducescatter_async(
    int process_set, int n, const char* const* names,
    const void* const* inputs, void* const* outputs, int64_t* output_counts,
    const int64_t* counts, kolo_dtype dtype, kolo_reduce_op op,
    kolo_handle* handle);
int kolo_process_set_barrier(int process_set);
int kolo_process_set_join(int process_set, int* last_rank);

/* Timeline (Chrome trace / Perfetto JSON, written by rank 0). */
int kolo_start_timeline(const char* path, int mark_cycles);
int kolo_stop_timeline(void);

int kolo_wait(kolo_handle handle);            /* blocks; returns the operation's status */
int kolo_poll(kolo_handle handle, int* done); /* never blocks */
void kolo_free(void* buffer);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* KOLO_C_API_H_ */
