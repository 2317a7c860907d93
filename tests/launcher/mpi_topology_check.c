/* A plain MPI program for kolorun's process tests: prints where each rank
 * runs (the same fields as allreduce_check.c, from MPI instead of kolo) and
 * checks a float32 sum allreduce against the value computed locally, then
 * prints how many CPUs the rank may run on ("affinity rank=R cpus=N of M").
 * Exits 1 on a mismatch. Needs no kolo runtime, so the launcher and the
 * two-host namespace machinery are tested before and apart from it. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define COUNT 1031 /* odd and prime: no chunking lines up by accident */

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0, local_rank = 0, local_size = 0;
  int cross_rank = 0, cross_size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm local, cross;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL,
                      &local);
  MPI_Comm_rank(local, &local_rank);
  MPI_Comm_size(local, &local_size);
  MPI_Comm_split(MPI_COMM_WORLD, local_rank, rank, &cross);
  MPI_Comm_rank(cross, &cross_rank);
  MPI_Comm_size(cross, &cross_size);

  /* Multiples of 0.5 are exact in float32, so the sum must match exactly. */
  static float input[COUNT], output[COUNT];
  for (int i = 0; i < COUNT; ++i)
    input[i] = (float)(rank + 1) * 0.5f * (i % 7 + 1);
  MPI_Allreduce(input, output, COUNT, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  int mismatches = 0;
  for (int i = 0; i < COUNT; ++i) {
    const float expected = (float)(size * (size + 1) / 2) * 0.5f * (i % 7 + 1);
    if (output[i] != expected) {
      if (mismatches++ < 5) {
        fprintf(stderr, "rank %d: index %d: expected %g, got %g\n", rank, i,
                expected, output[i]);
      }
    }
  }
  char host[256] = "?";
  gethostname(host, sizeof(host) - 1);
  const char* cpu_operations = getenv("KOLO_CPU_OPERATIONS");
  printf(
      "host=%s rank=%d size=%d local_rank=%d local_size=%d cross_rank=%d "
      "cross_size=%d cpu_operations=%s result=%s\n",
      host, rank, size, local_rank, local_size, cross_rank, cross_size,
      cpu_operations ? cpu_operations : "unset",
      mismatches ? "MISMATCH" : "ok");
  /* Which cores the launcher left the rank: kolorun asks every launcher
   * not to bind (a rank runs threads besides its main one). */
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  sched_getaffinity(0, sizeof(cpus), &cpus);
  printf("affinity rank=%d cpus=%d of %ld\n", rank, CPU_COUNT(&cpus),
         sysconf(_SC_NPROCESSORS_ONLN));
  fflush(stdout);
  MPI_Comm_free(&cross);
  MPI_Comm_free(&local);
  MPI_Finalize();
  return mismatches ? 1 : 0;
}
