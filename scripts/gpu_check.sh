#!/usr/bin/env bash
# The GPU check of issue 8, for a machine with one or more NVIDIA GPUs (CUDA
# and NCCL in /usr/local/cuda; the CPU dependencies of scripts/install-deps.sh
# installed). In under 5 minutes it:
#   1. records the machine (nvidia-smi, CUDA, NCCL, compilers, PyTorch);
#   2. configures kolo with -DKOLO_WITH_NCCL=ON, and with the CUDA LibTorch
#      of an installed PyTorch when there is one (CMAKE_PREFIX_PATH =
#      torch.utils.cmake_prefix_path), and builds the targets it runs with
#      every core;
#   3. runs `ctest -L gpu` (runtime collectives on CUDA tensors, kolo_bench
#      --device cuda, the LibTorch adapter on CUDA; np 2 tests skip unless
#      there are 2 GPUs);
#   4. runs a kolo_bench NCCL allreduce sweep at np 1 and at np = GPUs when
#      there are more than one (kolo's NCCL backend against NCCL itself);
#   5. trains CheXNet for a short epoch on a synthetic data set with
#      --device cuda --amp (skipped, with a note, without a CUDA PyTorch);
# and prints a summary table (step, status, seconds, key figure).
#
# Everything goes to out/gpu_check/ (log.txt is the whole console; each
# step's full output beside it), so that a failure can be diagnosed from the
# files alone. Exit status: 0 when every step passed or was skipped for a
# stated reason, 1 otherwise.
#
# Environment: KOLO_GPU_CHECK_BUILD (build directory, default
# build-gpu-check), KOLO_GPU_CHECK_BUDGET (seconds, default 290),
# KOLO_GPU_CHECK_TORCH=0 to build without LibTorch.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/out/gpu_check
build=${KOLO_GPU_CHECK_BUILD:-$root/build-gpu-check}
budget=${KOLO_GPU_CHECK_BUDGET:-290}
rm -rf "$out"
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1

start=$(date +%s)
now() { date +%s.%N; }
elapsed() { echo $(( $(date +%s) - start )); }
say() { printf '\n=== [%3ss] %s\n' "$(elapsed)" "$*"; }

# Summary rows: step|status|seconds|key figure.
summary=()
failed=0
record() {  # step status seconds figure
  summary+=("$1|$2|$3|$4")
  if [ "$2" = FAIL ]; then failed=1; fi
}

# Runs a step with the time left (at most $2 seconds), its output in
# $out/<name>.txt and on the console. Sets step_rc and step_seconds.
run_step() {  # name max_seconds command...
  local name=$1 max=$2
  shift 2
  local left=$(( budget - $(elapsed) ))
  local limit=$(( left < max ? left : max ))
  if [ "$limit" -lt 5 ]; then
    echo "(no time left for $name: $(elapsed) s of the $budget s budget used)"
    step_rc=124
    step_seconds=0
    return
  fi
  echo "\$ $*    (time limit ${limit} s)"
  local t0
  t0=$(now)
  timeout --kill-after=10 "$limit" "$@" > >(tee "$out/$name.txt") 2>&1
  step_rc=$?
  step_seconds=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
  if [ "$step_rc" -eq 124 ] || [ "$step_rc" -eq 137 ]; then
    echo "!!! $name: timed out after ${limit} s"
  fi
  echo "--- $name: exit $step_rc after ${step_seconds} s"
}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export PATH=/usr/local/cuda/bin:$PATH
cores=$(nproc)

# ---- 1. the machine ---------------------------------------------------------
say "machine"
echo "host $(hostname), $cores cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r)"
echo "kolo $(git -C "$root" rev-parse --short HEAD 2>/dev/null) ($(git -C "$root" status --porcelain 2>/dev/null | wc -l) changed files)"
gpus=0
if command -v nvidia-smi > /dev/null; then
  nvidia-smi || true
  nvidia-smi --query-gpu=index,name,memory.total,driver_version,compute_cap \
    --format=csv || true
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
else
  echo "nvidia-smi not found"
fi
echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>}; GPUs visible: $gpus"
nvcc --version 2>&1 | tail -2 || echo "nvcc not found"
grep -h -m3 -E '#define NCCL_(MAJOR|MINOR|PATCH)' /usr/local/cuda/include/nccl.h 2>/dev/null \
  || echo "no /usr/local/cuda/include/nccl.h"
ls /usr/local/cuda/lib64/libnccl* /usr/local/cuda/lib64/libcudart* 2>/dev/null
cmake --version | head -1
c++ --version | head -1
mpirun --version 2>&1 | head -1
if [ "$gpus" -eq 0 ]; then
  echo "!!! no GPU visible: the GPU tests will skip and the GPU steps fail"
fi

# PyTorch's CUDA LibTorch, if installed.
torch_prefix=""
torch_note=""
if [ "${KOLO_GPU_CHECK_TORCH:-1}" = 0 ]; then
  torch_note="KOLO_GPU_CHECK_TORCH=0"
else
  torch_info=$(python3 - 2>&1 <<'PY'
import torch
print("prefix", torch.utils.cmake_prefix_path)
print("version", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available(),
      "devices", torch.cuda.device_count() if torch.cuda.is_available() else 0,
      "cxx11_abi", torch._C._GLIBCXX_USE_CXX11_ABI)
PY
)
  echo "$(command -v python3) -c 'import torch ...':"
  echo "$torch_info"
  if ! echo "$torch_info" | grep -q '^prefix '; then
    torch_note="no PyTorch for python3"
  elif ! echo "$torch_info" | grep -q 'available True'; then
    torch_note="PyTorch without CUDA (or it sees no GPU)"
  elif echo "$torch_info" | grep -q 'cxx11_abi False'; then
    torch_note="PyTorch built with the pre-C++11 string ABI (kolo's Debian dependencies use the new one)"
  else
    torch_prefix=$(echo "$torch_info" | awk '/^prefix / {print $2}')
  fi
fi
if [ -n "$torch_prefix" ] && [ -z "${TORCH_CUDA_ARCH_LIST:-}" ] && [ "$gpus" -gt 0 ]; then
  # PyTorch's CMake (cmake/public/cuda.cmake) picks nvcc -gencode flags from
  # TORCH_CUDA_ARCH_LIST, else from GPUs it detects with a test program, else
  # from a fixed list that can name architectures this CUDA dropped; it also
  # appends them to CMAKE_CUDA_FLAGS (kolo's .cu file). Name this machine's.
  TORCH_CUDA_ARCH_LIST=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader \
    2>/dev/null | sort -u | paste -sd';' -)
  if [ -n "$TORCH_CUDA_ARCH_LIST" ]; then
    export TORCH_CUDA_ARCH_LIST
    echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
  fi
fi
if [ -n "$torch_prefix" ]; then
  echo "CUDA LibTorch: $torch_prefix"
else
  echo "no CUDA LibTorch: $torch_note; the CheXNet step is skipped"
fi

# ---- 2. configure and build -------------------------------------------------
targets_base="kolo_bench gpu_collectives_test kolorun"
targets_torch="gpu_torch_test chexnet_train chexnet_make_synthetic chexnet_predict"
configure() {  # with_torch
  local args=(-S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
              -DKOLO_WITH_NCCL=ON -DCUDAToolkit_ROOT=/usr/local/cuda)
  if [ "$1" = 1 ]; then
    args+=(-DKOLO_WITH_TORCH=ON "-DCMAKE_PREFIX_PATH=$torch_prefix")
  else
    args+=(-DKOLO_WITH_TORCH=OFF)
  fi
  run_step "configure$2" 150 cmake "${args[@]}"
}
with_torch=0
[ -n "$torch_prefix" ] && with_torch=1
say "configure (LibTorch: $([ $with_torch = 1 ] && echo "$torch_prefix" || echo off))"
configure $with_torch ""
if [ "$step_rc" -ne 0 ] && [ $with_torch = 1 ]; then
  record configure FAIL "$step_seconds" "with the CUDA LibTorch; see configure.txt"
  say "configure again without LibTorch"
  with_torch=0
  rm -rf "$build"
  configure 0 "_no_torch"
fi
if [ "$step_rc" -ne 0 ]; then
  record configure FAIL "$step_seconds" "see configure*.txt"
else
  figure=$(grep -E 'kolo: (NCCL backend|LibTorch)' "$out"/configure*.txt | tail -3 | sed 's/^-- kolo: //' | paste -sd';' -)
  record configure PASS "$step_seconds" "$figure"
fi
grep -E '^(KOLO_[A-Z_]+|CMAKE_PREFIX_PATH|CUDAToolkit_ROOT|Torch_DIR|NCCL_[A-Z_]+):' \
  "$build/CMakeCache.txt" 2>/dev/null

say "build ($cores jobs)"
targets=$targets_base
[ $with_torch = 1 ] && targets="$targets $targets_torch"
run_step build 240 cmake --build "$build" -j "$cores" --target $targets
if [ "$step_rc" -ne 0 ] && [ $with_torch = 1 ]; then
  record build FAIL "$step_seconds" "with the CUDA LibTorch; first errors in build.txt"
  grep -m 20 -E 'error|Error' "$out/build.txt"
  say "build again without LibTorch"
  with_torch=0
  build=$build-no-torch
  configure 0 "_no_torch"
  run_step build_no_torch 180 cmake --build "$build" -j "$cores" --target $targets_base
fi
if [ "$step_rc" -ne 0 ]; then
  record build FAIL "$step_seconds" "first errors in build*.txt"
  grep -h -m 20 -E 'error|Error' "$out"/build*.txt
else
  record build PASS "$step_seconds" "$(echo $targets | wc -w) targets, $([ $with_torch = 1 ] && echo with || echo without) LibTorch"
fi
for binary in "$build/bench/kolo_bench" "$build/examples/chexnet/chexnet_train"; do
  if [ -x "$binary" ]; then
    echo "ldd $binary (CUDA, NCCL, torch):"
    ldd "$binary" | grep -E 'nccl|cudart|cuda|torch|c10' || true
  fi
done

# ---- 3. ctest -L gpu ----------------------------------------------------------
say "ctest -L gpu"
if [ -x "$build/bench/kolo_bench" ]; then
  run_step ctest_gpu 150 ctest --test-dir "$build" -L gpu --output-on-failure \
    --timeout 140
  cp "$build/Testing/Temporary/LastTest.log" "$out/ctest_gpu_LastTest.log" 2>/dev/null
  tally=$(grep -E 'tests passed|tests failed' "$out/ctest_gpu.txt" | tail -1)
  skipped=$(grep -c '(Skipped)$' "$out/ctest_gpu.txt" || true)
  # Skips are only acceptable where the machine cannot run the test: np 1
  # must run wherever there is a GPU (and the LibTorch one with a CUDA
  # LibTorch); np 2 needs 2 GPUs.
  status=PASS
  [ "$step_rc" -ne 0 ] && status=FAIL
  note=""
  if [ "$gpus" -gt 0 ] && grep -qE 'gpu\.(collectives|bench)\.np1 \(Skipped\)' "$out/ctest_gpu.txt"; then
    status=FAIL
    note="; np 1 skipped on a machine with $gpus GPU(s)"
  fi
  if [ "$gpus" -gt 0 ] && [ $with_torch = 1 ] && grep -qE 'gpu\.torch\.np1 \(Skipped\)' "$out/ctest_gpu.txt"; then
    status=FAIL
    note="$note; LibTorch np 1 skipped with a CUDA LibTorch"
  fi
  record "ctest -L gpu" $status "$step_seconds" "$tally; $skipped skipped$note"
  grep -E 'SKIPPED' "$out/ctest_gpu.txt" | sort | uniq -c | head
else
  record "ctest -L gpu" FAIL 0 "not built"
fi

# ---- 4. kolo_bench: NCCL allreduce sweep --------------------------------------
bench_figure() {  # json
  python3 - "$1" <<'PY' 2>/dev/null || echo "no JSON"
import json, sys
j = json.load(open(sys.argv[1]))
best = {}
for r in j["rows"]:
    m = r.get("out_of_place") or r.get("in_place") or {}
    impl = r["implementation"]
    if impl in ("kolo", "nccl") and m.get("algbw_GBps") is not None:
        if r["size_bytes"] >= best.get(impl, (0, 0))[0]:
            best[impl] = (r["size_bytes"], m["algbw_GBps"])
parts = []
for impl in ("kolo", "nccl"):
    if impl in best:
        parts.append("%s %.1f GB/s" % (impl, best[impl][1]))
size = max(b for b, _ in best.values()) if best else 0
human = "%d MiB" % (size >> 20) if size >= 1 << 20 else "%d KiB" % (size >> 10)
print("algbw at %s: %s; wrong %s" % (human, ", ".join(parts),
                                     j.get("wrong_total")))
PY
}
run_bench() {  # np
  local np=$1
  say "kolo_bench --device cuda allreduce sweep, np $np"
  run_step "bench_np$np" 90 mpirun -np "$np" --bind-to none \
    "$build/bench/kolo_bench" --device cuda --collective allreduce \
    -b 8 -e 128M -f 4 -n 20 -w 5 -c 1 --json "$out/bench_np$np.json"
  local status=PASS
  [ "$step_rc" -ne 0 ] && status=FAIL
  record "kolo_bench nccl np$np" $status "$step_seconds" \
    "$(bench_figure "$out/bench_np$np.json")"
}
if [ -x "$build/bench/kolo_bench" ]; then
  run_bench 1
  if [ "$gpus" -gt 1 ]; then run_bench "$gpus"; fi
else
  record "kolo_bench nccl np1" FAIL 0 "not built"
fi

# ---- 5. CheXNet on the GPU ------------------------------------------------------
say "CheXNet: synthetic data, 1 short epoch, --device cuda --amp"
if [ $with_torch = 1 ] && [ -x "$build/examples/chexnet/chexnet_train" ]; then
  data=$out/chexnet_data
  run_step chexnet_data 30 "$build/examples/chexnet/chexnet_make_synthetic" \
    --out "$data" --images 512 --size 64 --seed 1
  if [ "$step_rc" -ne 0 ]; then
    record "chexnet data" FAIL "$step_seconds" "see chexnet_data.txt"
  else
    run_step chexnet_train 120 mpirun -np 1 --bind-to none \
      "$build/examples/chexnet/chexnet_train" --data "$data" \
      --out "$out/chexnet_run" --device cuda --amp --image-size 64 \
      --batch-size 32 --epochs 1 --max-steps-per-epoch 10 --workers 4 \
      --no-progress
    figure=$(grep -E '^epoch 1/1|test mean AUROC' "$out/chexnet_train.txt" \
      | sed -E 's/.*(validation loss [0-9.]+).*, ([0-9.]+ img\/s).*/\1, \2/; s/test mean AUROC ([^ ]+).*/test AUROC \1/' \
      | paste -sd';' -)
    status=PASS
    [ "$step_rc" -ne 0 ] && status=FAIL
    record "chexnet_train cuda amp" $status "$step_seconds" "${figure:-see chexnet_train.txt}"
    if [ -f "$out/chexnet_run/best.pt" ]; then
      # A GPU-trained checkpoint must read on the CPU.
      png=$(ls "$data/images" | head -1)
      run_step chexnet_predict 30 "$build/examples/chexnet/chexnet_predict" \
        --checkpoint "$out/chexnet_run/best.pt" --device cpu --json \
        "$data/images/$png"
      status=PASS
      [ "$step_rc" -ne 0 ] && status=FAIL
      record "chexnet_predict (cpu, GPU checkpoint)" $status "$step_seconds" \
        "$(head -c 80 "$out/chexnet_predict.txt" | tr -d '\n')"
    fi
  fi
else
  record "chexnet_train cuda amp" SKIP 0 "${torch_note:-LibTorch build failed}"
fi

# ---- summary ------------------------------------------------------------------
say "summary"
{
  printf '%-38s %-6s %8s  %s\n' step status seconds "key figure"
  printf '%-38s %-6s %8s  %s\n' ---- ------ ------- ----------
  for row in "${summary[@]}"; do
    IFS='|' read -r step status seconds figure <<< "$row"
    printf '%-38s %-6s %8s  %s\n' "$step" "$status" "$seconds" "$figure"
  done
  echo
  echo "total $(elapsed) s (budget $budget s); GPUs $gpus; logs in $out"
  [ $failed = 0 ] && echo "GPU CHECK PASSED" || echo "GPU CHECK FAILED"
} | tee "$out/summary.txt"
exit $failed
