#!/usr/bin/env bash
# The MNIST drop-in end to end: on synthetic MNIST idx files, mnist (one
# process) trains on batches of 2B rows and mnist_kolo on 2 ranks on B rows
# each (the same samples); every rank must end with bit-identical parameters,
# equal up to float rounding to the single-process run.
#
# Usage: mnist_dropin_test.sh MPIEXEC MNIST MNIST_KOLO COMPARE PYTHON WORK_DIR
set -euo pipefail
mpiexec=$1 mnist=$2 mnist_kolo=$3 compare=$4 python=$5 work=$6
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
if [[ ! -f $work/data/t10k-labels-idx1-ubyte ]]; then
  "$python" "$here/make_mnist_idx.py" "$work/data"
fi
rm -f "$work"/*.pt "$work"/*.optimizer

# 2 epochs of 12 batches: 384 samples per epoch, 32 per step.
"$mnist" "$work/data" 32 2 12 "$work/single.pt"
"$mpiexec" -np 2 --oversubscribe --bind-to none \
  sh -c 'exec "$0" "$1" 16 2 12 "$2.$OMPI_COMM_WORLD_RANK.pt"' \
  "$mnist_kolo" "$work/data" "$work/kolo"
"$compare" "$work/single.pt" "$work/kolo.0.pt" "$work/kolo.1.pt"
