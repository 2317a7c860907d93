/* kolo's C API across hosts: each rank prints where it runs (host, rank,
 * local and cross placement, as kolo sees them) and checks float32 sum
 * allreduces of several sizes against the values computed locally, then the
 * data plane kolo chose and its MPI ("kolo rank=R backend=B mpi=M"). Exits 1
 * on any mismatch or error. Run by the two-host and Slurm launcher tests. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "kolo/c_api.h"

/* 1 element, an odd prime, and more than a fusion-buffer chunk's worth. */
static const int64_t kCounts[] = {1, 1031, 300007};

static int Fail(const char* what, int code) {
  /* kolo_rank() is -1 until kolo_init succeeds. */
  fprintf(stderr, "allreduce_check: rank %d: %s failed with code %d: %s\n",
          kolo_rank(), what, code, kolo_last_error());
  return 1;
}

int main(void) {
  int code = kolo_init();
  if (code != 0) return Fail("kolo_init", code);
  const int rank = kolo_rank(), size = kolo_size();
  int mismatches = 0;
  for (size_t t = 0; t < sizeof(kCounts) / sizeof(kCounts[0]); ++t) {
    const int64_t count = kCounts[t];
    float* input = malloc(sizeof(float) * count);
    float* output = malloc(sizeof(float) * count);
    /* Multiples of 0.5 are exact in float32: the sum must match exactly. */
    for (int64_t i = 0; i < count; ++i) {
      input[i] = (float)(rank + 1) * 0.5f * (float)(i % 7 + 1);
    }
    char name[64];
    snprintf(name, sizeof(name), "allreduce_check.%lld", (long long)count);
    kolo_handle handle;
    code = kolo_allreduce_async(name, input, output, count, KOLO_FLOAT32,
                                KOLO_SUM, &handle);
    if (code == 0) code = kolo_wait(handle);
    if (code != 0) return Fail(name, code);
    for (int64_t i = 0; i < count; ++i) {
      const float expected =
          (float)(size * (size + 1) / 2) * 0.5f * (float)(i % 7 + 1);
      if (output[i] != expected && mismatches++ < 5) {
        fprintf(stderr,
                "allreduce_check: rank %d: %s index %lld: expected %g, got "
                "%g\n",
                rank, name, (long long)i, expected, output[i]);
      }
    }
    free(input);
    free(output);
  }
  char host[256] = "?";
  gethostname(host, sizeof(host) - 1);
  const char* cpu_operations = getenv("KOLO_CPU_OPERATIONS");
  printf(
      "host=%s rank=%d size=%d local_rank=%d local_size=%d cross_rank=%d "
      "cross_size=%d cpu_operations=%s result=%s\n",
      host, rank, size, kolo_local_rank(), kolo_local_size(), kolo_cross_rank(),
      kolo_cross_size(), cpu_operations ? cpu_operations : "unset",
      mismatches ? "MISMATCH" : "ok");
  /* The data plane kolo chose and the MPI it runs on. */
  printf("kolo rank=%d backend=%s mpi=%s\n", rank, kolo_backend_name(),
         kolo_mpi_library());
  fflush(stdout);
  code = kolo_shutdown();
  if (code != 0) return Fail("kolo_shutdown", code);
  return mismatches ? 1 : 0;
}
