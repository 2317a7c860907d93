/* A program written only against kolo's C API (kolo/c_api.h), in C. Exits 0
   when every check passes on this rank; prints what failed otherwise. */
#include <kolo/c_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

/* Each failure is one line, written with one fputs: when the launcher merges
   the ranks' stderr, a line written in pieces interleaves with another
   rank's and no longer reads as one message. */
static void report(int line, const char* cond, const char* what) {
  char message[4096];
  snprintf(message, sizeof message,
           "rank %d: %s:%d: check failed: %s: %s (last error: %s)\n",
           kolo_rank(), __FILE__, line, cond, what, kolo_last_error());
  fputs(message, stderr);
  fflush(stderr);
}

#define CHECK(cond, ...)                                              \
  do {                                                                \
    if (!(cond)) {                                                    \
      char what_[1024];                                               \
      snprintf(what_, sizeof what_, __VA_ARGS__);                     \
      report(__LINE__, #cond, what_);                                 \
      ++failures;                                                     \
    }                                                                 \
  } while (0)

/* Adasum reference (the paper's rule, in double): out = adasum of the
   inputs of ranks [first, first + n), the left half's result combined with
   the right half's. */
enum { kAdasumCount = 6, kMaxRanks = 64 };
static void adasum_input(int rank, double* x) {
  for (int i = 0; i < kAdasumCount; ++i) x[i] = (rank * 3 + i * 5) % 7 - 3.0;
}
static void adasum_reference(int first, int n, double* out) {
  if (n == 1) {
    adasum_input(first, out);
    return;
  }
  double a[kAdasumCount], b[kAdasumCount];
  adasum_reference(first, n / 2, a);
  adasum_reference(first + n / 2, n / 2, b);
  double dot = 0, aa = 0, bb = 0;
  for (int i = 0; i < kAdasumCount; ++i) {
    dot += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  const double ca = aa > 0 ? 1 - dot / (2 * aa) : 1;
  const double cb = bb > 0 ? 1 - dot / (2 * bb) : 1;
  for (int i = 0; i < kAdasumCount; ++i) out[i] = ca * a[i] + cb * b[i];
}

int main(void) {
  CHECK(kolo_rank() == -1, "rank before init is %d", kolo_rank());
  CHECK(strcmp(kolo_backend_name(), "") == 0, "backend before init is '%s'",
        kolo_backend_name());
  /* The MPI kolo is built against, named before init. */
  const char* mpi = kolo_mpi_library();
  CHECK(strncmp(mpi, "Open MPI ", 9) == 0 || strncmp(mpi, "MPICH ", 6) == 0,
        "kolo_mpi_library() is '%s'", mpi);
  CHECK(kolo_init() == 0, "kolo_init");
  if (failures > 0) return 1; /* nothing below means anything without init */
  CHECK(kolo_is_initialized() == 1, "initialised");
  const char* backend = kolo_backend_name();
  CHECK(strcmp(backend, "shm") == 0 || strcmp(backend, "ring") == 0 ||
            strcmp(backend, "hierarchical") == 0 || strcmp(backend, "mpi") == 0,
        "backend '%s'", backend);
  const int rank = kolo_rank();
  const int size = kolo_size();
  CHECK(size >= 1 && rank >= 0 && rank < size, "rank %d size %d", rank, size);
  CHECK(kolo_local_size() >= 1, "local size");

  /* Allreduce, in place and out of place, submitted in a rank-dependent
     order. */
  enum { kTensors = 20, kCount = 37 };
  float in[kTensors][kCount];
  float out[kTensors][kCount];
  kolo_handle handles[kTensors];
  char names[kTensors][32];
  for (int k = 0; k < kTensors; ++k) {
    const int t = (k * (rank + 1) * 7) % kTensors; /* a permutation per rank */
    const int order = (rank % 2) ? kTensors - 1 - k : k;
    (void)t;
    for (int i = 0; i < kCount; ++i) in[order][i] = (float)(rank + i + order);
    snprintf(names[order], sizeof(names[order]), "c.t%d", order);
    const int in_place = order % 2;
    CHECK(kolo_allreduce_async(names[order], in[order],
                               in_place ? (void*)in[order] : (void*)out[order],
                               kCount, KOLO_FLOAT32, KOLO_SUM,
                               &handles[order]) == 0,
          "enqueue %d", order);
  }
  for (int k = 0; k < kTensors; ++k) {
    CHECK(kolo_wait(handles[k]) == 0, "wait %d", k);
    const float* result = (k % 2) ? in[k] : out[k];
    for (int i = 0; i < kCount; ++i) {
      const float expected = (float)(size * (i + k) + size * (size - 1) / 2);
      CHECK(result[i] == expected, "tensor %d element %d: expected %g got %g",
            k, i, expected, result[i]);
    }
  }

  /* Integer average rounds toward zero. */
  int32_t v = rank == 0 ? -(size * 2 + 1) : 0;
  kolo_handle h;
  CHECK(kolo_allreduce_async("c.avg", &v, &v, 1, KOLO_INT32, KOLO_AVERAGE, &h) == 0, "avg");
  CHECK(kolo_wait(h) == 0, "avg wait");
  CHECK(v == -(size * 2 + 1) / size, "average %d", v);

  /* Broadcast from the last rank. */
  double b[5];
  for (int i = 0; i < 5; ++i) b[i] = rank * 10.0 + i;
  CHECK(kolo_broadcast_async("c.bcast", b, 5, KOLO_FLOAT64, size - 1, &h) == 0, "bcast");
  CHECK(kolo_wait(h) == 0, "bcast wait");
  for (int i = 0; i < 5; ++i) CHECK(b[i] == (size - 1) * 10.0 + i, "bcast %d", i);

  /* Allgather with a different count per rank. */
  int64_t mine[8];
  for (int i = 0; i <= rank; ++i) mine[i] = rank;
  void* gathered = NULL;
  int64_t gathered_count = 0;
  CHECK(kolo_allgather_async("c.gather", mine, rank + 1, KOLO_INT64, &gathered,
                             &gathered_count, &h) == 0, "gather");
  CHECK(kolo_wait(h) == 0, "gather wait");
  CHECK(gathered_count == (int64_t)size * (size + 1) / 2, "gather count %lld",
        (long long)gathered_count);
  {
    int64_t index = 0;
    for (int r = 0; r < size; ++r) {
      for (int i = 0; i <= r; ++i, ++index) {
        CHECK(((int64_t*)gathered)[index] == r, "gather index %lld", (long long)index);
      }
    }
  }
  kolo_free(gathered);

  /* Alltoall: one element to each rank. */
  int32_t send[64];
  int64_t recv_counts[64];
  for (int j = 0; j < size; ++j) send[j] = rank * 100 + j;
  void* received = NULL;
  int64_t received_count = 0;
  CHECK(kolo_alltoall_async("c.a2a", send, size, KOLO_INT32, NULL, &received,
                            &received_count, recv_counts, &h) == 0, "a2a");
  CHECK(kolo_wait(h) == 0, "a2a wait");
  CHECK(received_count == size, "a2a count");
  for (int j = 0; j < size; ++j) {
    CHECK(((int32_t*)received)[j] == j * 100 + rank, "a2a from %d", j);
    CHECK(recv_counts[j] == 1, "a2a recv count %d", j);
  }
  kolo_free(received);

  /* Reducescatter: every rank gets its share of the sum. */
  float rs_in[64 * 2];
  float rs_out[64 * 2];
  int64_t rs_count = 0;
  for (int i = 0; i < size * 2; ++i) rs_in[i] = (float)i;
  CHECK(kolo_reducescatter_async("c.rs", rs_in, rs_out, &rs_count, size * 2,
                                 KOLO_FLOAT32, KOLO_SUM, &h) == 0, "rs");
  CHECK(kolo_wait(h) == 0, "rs wait");
  CHECK(rs_count == 2, "rs count %lld", (long long)rs_count);
  for (int i = 0; i < 2; ++i) {
    CHECK(rs_out[i] == (float)(size * (rank * 2 + i)), "rs element %d", i);
  }

  /* Grouped allreduce. */
  {
    float g0[3] = {1, 1, 1}, g1[2] = {2, 2};
    const char* gnames[2] = {"c.g0", "c.g1"};
    const void* gin[2] = {g0, g1};
    void* gout[2] = {g0, g1};
    const int64_t gcounts[2] = {3, 2};
    CHECK(kolo_grouped_allreduce_async(2, gnames, gin, gout, gcounts,
                                       KOLO_FLOAT32, KOLO_SUM, &h) == 0, "group");
    CHECK(kolo_wait(h) == 0, "group wait");
    CHECK(g0[2] == size && g1[1] == 2 * size, "group values %g %g", g0[2], g1[1]);
  }

  /* Grouped allgather: rank r sends r + 1 and 2 elements; both come back,
     each in rank order. */
  {
    int64_t a[64], b[2] = {rank, -rank};
    for (int i = 0; i <= rank; ++i) a[i] = rank * 10 + i;
    const char* names[2] = {"c.gag.a", "c.gag.b"};
    const void* in[2] = {a, b};
    const int64_t counts[2] = {rank + 1, 2};
    void* out[2] = {NULL, NULL};
    int64_t out_counts[2] = {0, 0};
    CHECK(kolo_grouped_allgather_async(2, names, in, counts, KOLO_INT64, out,
                                       out_counts, &h) == 0,
          "grouped gather");
    CHECK(kolo_wait(h) == 0, "grouped gather wait");
    CHECK(out_counts[0] == (int64_t)size * (size + 1) / 2 &&
              out_counts[1] == 2 * size,
          "grouped gather counts %lld %lld", (long long)out_counts[0],
          (long long)out_counts[1]);
    int64_t index = 0;
    for (int r = 0; r < size; ++r) {
      for (int i = 0; i <= r; ++i, ++index) {
        CHECK(((int64_t*)out[0])[index] == r * 10 + i, "gather a index %lld",
              (long long)index);
      }
      CHECK(
          ((int64_t*)out[1])[2 * r] == r && ((int64_t*)out[1])[2 * r + 1] == -r,
          "gather b from rank %d", r);
    }
    kolo_free(out[0]);
    kolo_free(out[1]);
  }

  /* Grouped reducescatter: two tensors, each rank gets its share of each. */
  {
    double x[64 * 3], y[64];
    for (int i = 0; i < size * 3; ++i) x[i] = i + rank;
    for (int i = 0; i < size; ++i) y[i] = 2.0 * i;
    double x_out[3], y_out[1];
    const char* names[2] = {"c.grs.x", "c.grs.y"};
    const void* in[2] = {x, y};
    void* out[2] = {x_out, y_out};
    const int64_t counts[2] = {size * 3, size};
    int64_t out_counts[2] = {0, 0};
    CHECK(
        kolo_grouped_reducescatter_async(2, names, in, out, out_counts, counts,
                                         KOLO_FLOAT64, KOLO_SUM, &h) == 0,
        "grouped rs");
    CHECK(kolo_wait(h) == 0, "grouped rs wait");
    CHECK(out_counts[0] == 3 && out_counts[1] == 1, "grouped rs counts");
    const double rank_sum = size * (size - 1) / 2.0;
    for (int i = 0; i < 3; ++i) {
      CHECK(x_out[i] == size * (rank * 3.0 + i) + rank_sum,
            "grouped rs x element %d: %g", i, x_out[i]);
    }
    CHECK(y_out[0] == size * 2.0 * rank, "grouped rs y: %g", y_out[0]);
  }

  /* A group whose members differ between ranks fails everywhere (code 9). */
  if (size > 1) {
    int32_t v[1] = {rank};
    const char* names[2] = {"c.gm.a", rank == 1 ? "c.gm.c" : "c.gm.b"};
    const void* in[2] = {v, v};
    const int64_t counts[2] = {1, 1};
    void* out[2] = {NULL, NULL};
    int64_t out_counts[2];
    CHECK(kolo_grouped_allgather_async(2, names, in, counts, KOLO_INT32, out,
                                       out_counts, &h) == 0,
          "gm enqueue");
    CHECK(kolo_wait(h) == 9, "gm code");
    CHECK(strstr(kolo_last_error(), "group mismatch") != NULL ||
              strstr(kolo_last_error(), "fails with its group") != NULL,
          "gm message");
    CHECK(out[0] == NULL && out[1] == NULL, "gm outputs freed");
  }

  /* Adasum: power-of-two rank counts only (code 3 naming the count). */
  {
    double x[kAdasumCount], expected[kAdasumCount];
    adasum_input(rank, x);
    const int power_of_two = (size & (size - 1)) == 0;
    const int code = kolo_allreduce_async("c.adasum", x, x, kAdasumCount,
                                          KOLO_FLOAT64, KOLO_ADASUM, &h);
    if (power_of_two && size <= kMaxRanks) {
      CHECK(code == 0, "adasum enqueue");
      CHECK(kolo_wait(h) == 0, "adasum wait");
      adasum_reference(0, size, expected);
      for (int i = 0; i < kAdasumCount; ++i) {
        CHECK(fabs(x[i] - expected[i]) <= 1e-12 * (1 + fabs(expected[i])),
              "adasum element %d: expected %.17g got %.17g", i, expected[i],
              x[i]);
      }
    } else if (!power_of_two) {
      char count[64];
      snprintf(count, sizeof count, "this job has %d", size);
      CHECK(code == 3, "adasum at %d ranks returned %d", size, code);
      CHECK(strstr(kolo_last_error(), count) != NULL, "adasum message");
    }
  }

  /* Process sets: the odd ranks sum their global ranks; a rank outside
     gets code 3; after removal, code 9. At np 1 every set would be the
     global one, which exists already. */
  if (size > 1) {
    int odd[8];
    int n_odd = 0;
    for (int r = 1; r < size && n_odd < 8; r += 2) odd[n_odd++] = r;
    int set = -1;
    CHECK(kolo_add_process_set(odd, n_odd, &set) == 0, "add process set: %s",
          kolo_last_error());
    CHECK(set > 0, "process set id %d", set);
    CHECK(kolo_process_set_size(set) == n_odd, "set size %d",
          kolo_process_set_size(set));
    int members[8];
    CHECK(kolo_process_set_ranks(set, members, 8) == n_odd, "set ranks");
    CHECK(members[0] == odd[0], "first member %d", members[0]);
    const int member = rank % 2 == 1;
    int64_t value = rank;
    if (member) {
      CHECK(kolo_process_set_rank(set) == rank / 2,
            "set rank %d", kolo_process_set_rank(set));
      CHECK(kolo_process_set_allreduce_async(set, "c.ps", &value, &value, 1,
                                             KOLO_INT64, KOLO_SUM, &h) == 0,
            "set allreduce: %s", kolo_last_error());
      CHECK(kolo_wait(h) == 0, "set allreduce wait");
      int64_t expected = 0;
      for (int k = 0; k < n_odd; ++k) expected += odd[k];
      CHECK(value == expected, "set sum %lld, expected %lld",
            (long long)value, (long long)expected);
      double root_value = rank;
      CHECK(kolo_process_set_broadcast_async(set, "c.ps.b", &root_value, 1,
                                             KOLO_FLOAT64, odd[n_odd - 1],
                                             &h) == 0,
            "set broadcast");
      CHECK(kolo_wait(h) == 0, "set broadcast wait");
      CHECK(root_value == odd[n_odd - 1], "set broadcast %g", root_value);
      CHECK(kolo_process_set_barrier(set) == 0, "set barrier");
    } else {
      CHECK(kolo_process_set_rank(set) == -1, "rank outside the set");
      CHECK(kolo_process_set_allreduce_async(set, "c.ps", &value, &value, 1,
                                             KOLO_INT64, KOLO_SUM, &h) == 3,
            "outside the set");
      CHECK(strstr(kolo_last_error(), "is not in process set") != NULL,
            "outside message: %s", kolo_last_error());
    }
    CHECK(kolo_remove_process_set(set) == 0, "remove process set");
    CHECK(kolo_process_set_barrier(set) == 9, "barrier after removal");
    CHECK(kolo_process_set_size(set) == -1, "size after removal");
  }

  CHECK(kolo_barrier() == 0, "barrier");

  /* A shape mismatch fails everywhere with code 9 and a message. */
  if (size > 1) {
    float m[4] = {0};
    CHECK(kolo_allreduce_async("c.mismatch", m, m, rank == 1 ? 3 : 4,
                               KOLO_FLOAT32, KOLO_SUM, &h) == 0, "mismatch enqueue");
    CHECK(kolo_wait(h) == 9, "mismatch code");
    CHECK(strstr(kolo_last_error(), "c.mismatch") != NULL, "mismatch message");
  }

  /* Local errors: duplicate pending name (3), bad dtype (3), unknown handle. */
  {
    float d[2] = {1, 1};
    kolo_handle h1, h2;
    /* A name twice in one call. */
    const char* twice[2] = {"c.dup0", "c.dup0"};
    const void* twice_in[2] = {d, d};
    void* twice_out[2] = {d, d};
    const int64_t twice_counts[2] = {2, 2};
    CHECK(kolo_grouped_allreduce_async(2, twice, twice_in, twice_out, twice_counts,
                                       KOLO_FLOAT32, KOLO_SUM, &h2) == 3,
          "a name twice in one group");
    CHECK(strstr(kolo_last_error(), "c.dup0") != NULL, "group dup message");
    /* A name still pending: the other ranks submit "c.dup" only after rank 0
       has tried it twice (at np 1 nothing holds the first one back, so the
       second submission may find it done: only the outcome of the first is
       checked there). */
    if (size > 1 && rank != 0) CHECK(kolo_barrier() == 0, "dup barrier");
    CHECK(kolo_allreduce_async("c.dup", d, d, 2, KOLO_FLOAT32, KOLO_SUM, &h1) == 0, "dup 1");
    if (size > 1 && rank == 0) {
      CHECK(kolo_allreduce_async("c.dup", d, d, 2, KOLO_FLOAT32, KOLO_SUM, &h2) == 3,
            "dup 2");
      CHECK(strstr(kolo_last_error(), "c.dup") != NULL, "dup message");
      CHECK(kolo_barrier() == 0, "dup barrier");
    }
    int done = 0;
    CHECK(kolo_poll(h1, &done) == 0, "poll");
    CHECK(kolo_wait(h1) == 0, "dup wait");
    CHECK(kolo_wait(h1) == 3, "second wait on a released handle");
    CHECK(kolo_allreduce_async("c.badtype", d, d, 2, (kolo_dtype)42, KOLO_SUM, &h2) == 3,
          "bad dtype");
    CHECK(kolo_allreduce_async("c.boolavg", d, d, 2, KOLO_BOOL, KOLO_AVERAGE, &h2) == 3,
          "bool average");
  }

  int last = -1;
  CHECK(kolo_join(&last) == 0, "join");
  CHECK(last >= 0 && last < size, "join last rank %d", last);

  CHECK(kolo_shutdown() == 0, "shutdown");
  float after = 0;
  CHECK(kolo_allreduce_async("c.after", &after, &after, 1, KOLO_FLOAT32,
                             KOLO_SUM, &h) == 1, "after shutdown: cancelled");
  if (failures == 0) printf("c_api_test: rank %d of %d passed\n", rank, size);
  return failures == 0 ? 0 : 1;
}
