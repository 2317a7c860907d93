#!/usr/bin/env bash
# Installs everything kolo needs to build, test and run on Debian 12 (as root,
# or through sudo). Safe to run again.
#
#   scripts/install-deps.sh               build, run and test with Open MPI
#   scripts/install-deps.sh mpich slurm   also MPICH (a second build's MPI)
#                                         and Slurm with munge (the tests of
#                                         kolorun under a real Slurm)
#   scripts/install-deps.sh --demo        only what scripts/demo.sh needs:
#                                         not the tests, the Python package
#                                         kolo.torch or the CheXNet DICOM input
# scripts/test.sh installs both extras; the demo needs neither.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates
  libopenmpi-dev openmpi-bin
  libabsl-dev libprotobuf-dev protobuf-compiler
  libssl-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libgloo-dev
  libspng-dev libpng-dev
  libtorch-dev python3-torch python3-torchvision
  libtcmalloc-minimal4
  clang libclang-rt-14-dev iproute2 util-linux python3
)
# Without --demo also: CheXNet DICOM input (DCMTK) and its test files
# (pydicom) — without them chexnet_* refuse DICOM files with a clear message —
# and the Python package's build and tests; jemalloc, which kolorun
# --memory-allocator offers and its tests preload (tcmalloc, the default
# allocator of kolorun's ranks, is in every install).
demo=0
for extra in "$@"; do
  case $extra in
    --demo) demo=1 ;;
    mpich) packages+=(libmpich-dev mpich) ;;
    slurm) packages+=(slurmctld slurmd slurm-client munge) ;;
    *) echo "install-deps: unknown extra '$extra' (mpich, slurm or --demo)" >&2; exit 2 ;;
  esac
done
if [ "$demo" = 0 ]; then
  packages+=(libdcmtk-dev python3-pydicom python3-dev pybind11-dev python3-pytest
    libjemalloc2)
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

# MPICH registers the same alternatives as Open MPI (mpirun, mpiexec, mpicc,
# the mpi.h and libmpi.so links), at a lower priority. Open MPI must stay
# the default whatever the order of installation: kolo's default build,
# scripts and users' mpirun expect it; MPICH builds use MPICH's suffixed
# names.
keep_open_mpi_default() {
  local alternative target current
  for alternative in mpi:/usr/bin/mpicc.openmpi mpirun:/usr/bin/mpirun.openmpi \
      mpi-x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu/openmpi/include; do
    target=${alternative#*:}
    alternative=${alternative%%:*}
    [ -e "$target" ] || continue
    current=$(update-alternatives --query "$alternative" 2>/dev/null | sed -n 's/^Value: //p')
    if [ -n "$current" ] && [ "$current" != "$target" ]; then
      echo "install-deps: $alternative pointed at $current; setting it back to Open MPI"
      "${sudo_cmd[@]}" update-alternatives --set "$alternative" "$target"
    fi
  done
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: every package is already installed"
  keep_open_mpi_default
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
keep_open_mpi_default
