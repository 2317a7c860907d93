/* latency_bench: the small-operation path as an application sees it.
 *
 * After the application's own MPI_Init_thread, for each size: the median
 * time of a raw MPI_Allreduce and of kolo_allreduce_async + kolo_wait on the
 * same float32 buffers (sum), each over --reps timed repetitions after
 * warm-up; every kolo result is checked against the known sum. Then the CPU
 * time the idle, initialised runtime uses over --idle-seconds (getrusage of
 * the whole process: kolo's threads and this one, which sleeps).
 *
 * One JSON object per line on rank 0's stdout:
 *   {"size_bytes":8,"mpi_us":0.6,"kolo_us":12.3}
 *   {"idle_cpu_percent":0.2,"idle_seconds":10}
 * Exit status: 0, or 1 when a result is wrong or a call fails.
 *
 *   mpirun -np 2 latency_bench [--reps N] [--idle-seconds S] [SIZE...]
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "kolo/c_api.h"

static double NowUs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int CompareDoubles(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static double Median(double* values, int n) {
  qsort(values, (size_t)n, sizeof(double), CompareDoubles);
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

static double CpuSeconds(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return (double)usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
         (double)usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

static int Fail(const char* what) {
  fprintf(stderr, "latency_bench: %s: %s\n", what, kolo_last_error());
  MPI_Abort(MPI_COMM_WORLD, 1);
  return 1;
}

int main(int argc, char** argv) {
  int reps = 2000;
  double idle_seconds = 10;
  int64_t sizes[32];
  int num_sizes = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--idle-seconds") == 0 && i + 1 < argc) {
      idle_seconds = atof(argv[++i]);
    } else if (argv[i][0] != '-' && num_sizes < 32) {
      sizes[num_sizes++] = atoll(argv[i]);
    } else {
      fprintf(stderr,
              "usage: latency_bench [--reps N] [--idle-seconds S] "
              "[SIZE_BYTES...]\n");
      return 2;
    }
  }
  if (reps < 1) reps = 1;
  if (num_sizes == 0) {
    const int64_t defaults[] = {8, 4096, 65536, 262144, 1048576};
    num_sizes = 5;
    memcpy(sizes, defaults, sizeof(defaults));
  }

  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  if (kolo_init() != 0) return Fail("kolo_init");
  const int rank = kolo_rank(), size = kolo_size();
  int status = 0;
  for (int s = 0; s < num_sizes; ++s) {
    const int64_t count = sizes[s] / 4 > 0 ? sizes[s] / 4 : 1;
    float* in = malloc((size_t)count * sizeof(float));
    float* out = malloc((size_t)count * sizeof(float));
    double* mpi_us = malloc((size_t)reps * sizeof(double));
    double* kolo_us = malloc((size_t)reps * sizeof(double));
    for (int64_t i = 0; i < count; ++i) in[i] = (float)(rank + 1 + (i % 7));
    char name[64];
    snprintf(name, sizeof(name), "latency.%lld", (long long)sizes[s]);
    const int warmup = reps / 10 + 10;
    for (int r = -warmup; r < reps; ++r) {
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = NowUs();
      MPI_Allreduce(in, out, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      const double mpi = NowUs() - t0;
      MPI_Barrier(MPI_COMM_WORLD);
      kolo_handle handle;
      t0 = NowUs();
      if (kolo_allreduce_async(name, in, out, count, KOLO_FLOAT32, KOLO_SUM,
                               &handle) != 0 ||
          kolo_wait(handle) != 0) {
        return Fail(name);
      }
      const double kolo = NowUs() - t0;
      if (r >= 0) {
        mpi_us[r] = mpi;
        kolo_us[r] = kolo;
      }
      for (int64_t i = 0; i < count; i += 1 + count / 17) {
        const float expected =
            (float)(size * (size + 1) / 2 + size * (int)(i % 7));
        if (out[i] != expected) {
          fprintf(stderr, "latency_bench: %s[%lld] is %g, expected %g\n", name,
                  (long long)i, out[i], expected);
          status = 1;
        }
      }
    }
    /* Rank 0 reports the median of the per-repetition maximum over ranks:
       an operation is done when it is done everywhere. */
    MPI_Allreduce(MPI_IN_PLACE, mpi_us, reps, MPI_DOUBLE, MPI_MAX,
                  MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, kolo_us, reps, MPI_DOUBLE, MPI_MAX,
                  MPI_COMM_WORLD);
    if (rank == 0) {
      printf("{\"size_bytes\":%lld,\"mpi_us\":%.3f,\"kolo_us\":%.3f}\n",
             (long long)sizes[s], Median(mpi_us, reps), Median(kolo_us, reps));
      fflush(stdout);
    }
    free(in);
    free(out);
    free(mpi_us);
    free(kolo_us);
  }

  if (idle_seconds > 0) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double cpu0 = CpuSeconds(), wall0 = NowUs();
    struct timespec nap = {(time_t)idle_seconds,
                           (long)((idle_seconds - (time_t)idle_seconds) * 1e9)};
    nanosleep(&nap, NULL);
    double percent =
        100.0 * (CpuSeconds() - cpu0) / ((NowUs() - wall0) / 1e6);
    MPI_Allreduce(MPI_IN_PLACE, &percent, 1, MPI_DOUBLE, MPI_MAX,
                  MPI_COMM_WORLD);
    if (rank == 0) {
      printf("{\"idle_cpu_percent\":%.3f,\"idle_seconds\":%g}\n", percent,
             idle_seconds);
    }
  }
  if (kolo_shutdown() != 0) return Fail("kolo_shutdown");
  MPI_Finalize();
  return status;
}
