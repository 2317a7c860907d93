#!/usr/bin/env bash
# A kolo program started by the launcher of the other MPI (MPICH's Hydra for
# an Open MPI build, Open MPI's mpirun for an MPICH build) finds itself alone
# in MPI_COMM_WORLD on every rank. kolo_init must fail on each, naming the
# launcher and the rank count, instead of letting every rank run alone.
# usage: other_launcher_test.sh OTHER_MPIEXEC PROGRAM
# Exits 77 (skipped) when the other MPI is not installed.
set -u
other=$1 program=$2
if [ -z "$other" ] || [ ! -x "$other" ]; then
  echo "SKIP: the other MPI's launcher is not installed (apt-get install mpich openmpi-bin)"
  exit 77
fi
if "$other" --version 2>&1 | grep -q HYDRA; then
  flags=() expected="a PMI launcher (MPICH's mpiexec/Hydra, or srun --mpi=pmi2) started 2 of them (PMI_SIZE=2)"
else
  flags=(--oversubscribe --allow-run-as-root) expected="Open MPI's mpirun started 2 of them (OMPI_COMM_WORLD_SIZE=2)"
fi
# Under Hydra each rank is an Open MPI singleton, which starts a daemon that
# creates its session directory in the temporary directory: two singletons
# racing for the same one fail in Open MPI ("mkdir /tmp/ompi.<host>.0: File
# exists") before kolo is reached. Each rank gets a directory of its own.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$(timeout 50 "$other" "${flags[@]}" -np 2 sh -c \
  'd=$(mktemp -d -p "$1"); OMPI_MCA_orte_tmpdir_base=$d exec "$0"' \
  "$program" "$tmp" 2>&1)
rc=$?
printf '%s\n' "$out"
[ "$rc" -ne 124 ] || { echo "FAIL: the job hung"; exit 1; }
[ "$rc" -ne 0 ] || { echo "FAIL: the job succeeded, each rank alone"; exit 1; }
# c_api_test reports a failed kolo_init with kolo_last_error().
n=$(grep -F "kolo_init" <<<"$out" |
  grep -cF "this process is alone in MPI_COMM_WORLD, but $expected")
[ "$n" -eq 2 ] || { echo "FAIL: expected kolo_init's error from both ranks, found $n"; exit 1; }
echo "PASS"
