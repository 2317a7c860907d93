/* A stand-in for an elastic training program, through kolo's C API, for
 * kolorun's elastic tests:
 *   elastic_worker STATE_DIR TOTAL_STEPS STEP_MS
 * Each "step" is an allreduce checked against the rank count, then the stop
 * check of kolo::torch::elastic::stop_requested (this host's
 * KOLO_ELASTIC_STOP_FILE exists on any rank: an allreduce of the flags with
 * max). Rank 0 commits the step count to STATE_DIR/checkpoint after every
 * step (write, then rename: atomic) and logs
 *   "restart=R step=S size=N host=H"
 * lines to STATE_DIR/steps.log. A launch resumes from the checkpoint (rank
 * 0 reads it, a broadcast gives it to every rank). On a stop request the
 * program exits with status 75; after TOTAL_STEPS steps, with 0. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kolo/c_api.h"

static int Fail(const char* what, int code) {
  fprintf(stderr, "elastic_worker: rank %d: %s failed with code %d: %s\n",
          kolo_rank(), what, code, kolo_last_error());
  return 1;
}

/* Waits for the operation just submitted (a submission's code first). */
static int Wait(int code, const kolo_handle* handle) {
  return code != 0 ? code : kolo_wait(*handle);
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: elastic_worker STATE_DIR TOTAL_STEPS STEP_MS\n");
    return 2;
  }
  const char* dir = argv[1];
  const long total = atol(argv[2]);
  const long step_ms = atol(argv[3]);
  const char* restart = getenv("KOLO_ELASTIC_RESTART");
  const char* stop_file = getenv("KOLO_ELASTIC_STOP_FILE");
  int code = kolo_init();
  if (code != 0) return Fail("kolo_init", code);
  const int rank = kolo_rank(), size = kolo_size();
  char path[4096], tmp[4096], log_path[4096], host[256] = "?";
  snprintf(path, sizeof(path), "%s/checkpoint", dir);
  snprintf(tmp, sizeof(tmp), "%s/checkpoint.tmp", dir);
  snprintf(log_path, sizeof(log_path), "%s/steps.log", dir);
  gethostname(host, sizeof(host) - 1);

  int64_t step = 0;
  if (rank == 0) {
    FILE* f = fopen(path, "r");
    if (f != NULL) {
      long long saved = 0;
      if (fscanf(f, "%lld", &saved) == 1) step = saved;
      fclose(f);
    }
    printf("elastic_worker: restart=%s size=%d start_step=%lld\n",
           restart ? restart : "unset", size, (long long)step);
    fflush(stdout);
  }
  kolo_handle handle;
  code = Wait(kolo_broadcast_async("elastic.start", &step, 1, KOLO_INT64, 0,
                                   &handle),
              &handle);
  if (code != 0) return Fail("broadcast", code);

  while (step < total) {
    const struct timespec pause = {step_ms / 1000, (step_ms % 1000) * 1000000};
    nanosleep(&pause, NULL);
    float one = 1.0f, sum = 0.0f;
    code = Wait(kolo_allreduce_async("elastic.step", &one, &sum, 1,
                                     KOLO_FLOAT32, KOLO_SUM, &handle),
                &handle);
    if (code != 0) return Fail("allreduce", code);
    if (sum != (float)size) {
      fprintf(stderr, "elastic_worker: rank %d: sum %g, expected %d\n", rank,
              sum, size);
      return 1;
    }
    ++step;
    if (rank == 0) {
      FILE* f = fopen(tmp, "w");
      if (f == NULL || fprintf(f, "%lld\n", (long long)step) < 0 ||
          fclose(f) != 0 || rename(tmp, path) != 0) {
        perror("elastic_worker: checkpoint");
        return 1;
      }
      FILE* log = fopen(log_path, "a");
      if (log != NULL) {
        fprintf(log, "restart=%s step=%lld size=%d host=%s\n",
                restart ? restart : "unset", (long long)step, size, host);
        fclose(log);
      }
    }
    float stop = (stop_file != NULL && access(stop_file, F_OK) == 0) ? 1 : 0;
    float any = 0;
    code = Wait(kolo_allreduce_async("elastic.stop", &stop, &any, 1,
                                     KOLO_FLOAT32, KOLO_MAX, &handle),
                &handle);
    if (code != 0) return Fail("stop check", code);
    if (any != 0) {
      if (rank == 0) {
        printf("elastic_worker: stopping on request after step %lld\n",
               (long long)step);
        fflush(stdout);
      }
      kolo_shutdown();
      return 75;
    }
  }
  if (rank == 0) {
    printf("elastic_worker: finished %lld steps\n", (long long)step);
    fflush(stdout);
  }
  code = kolo_shutdown();
  return code != 0 ? Fail("kolo_shutdown", code) : 0;
}
