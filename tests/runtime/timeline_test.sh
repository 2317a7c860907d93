#!/usr/bin/env bash
# Runs timeline_test on NP ranks and checks the files with check_timeline.py.
# usage: timeline_test.sh MPIEXEC BINARY NP normal|kill|fast
# normal and kill look at the negotiation through rank 0 (the fast lane
# off); fast at the fast lane's spans.
set -u
mpiexec=$1 binary=$2 np=$3 mode=$4
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
lane=0
if [ "$mode" = fast ]; then lane=1; fi
flags=(--oversubscribe --bind-to none)  # Hydra (MPI_UNDER_TEST=mpich) needs none
[ "${MPI_UNDER_TEST:-openmpi}" = mpich ] && flags=()
KOLO_FAST_LANE=$lane KOLO_TIMELINE="$dir/started.json" timeout 120 "$mpiexec" "${flags[@]}" \
  -np "$np" "$binary" "$dir" "$mode"
code=$?
if [ "$mode" != kill ] && [ "$code" -ne 0 ]; then
  echo "FAIL: timeline_test exited $code"; exit 1
fi
python3 "$here/check_timeline.py" "$dir" "$np" "$mode"
