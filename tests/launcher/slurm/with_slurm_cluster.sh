#!/bin/bash
# Runs a command inside a throw-away Slurm cluster on this machine (see
# slurm_cluster.sh; needs root): on the cluster's first node, where salloc,
# sbatch, srun and squeue reach it. The cluster goes away when the command
# ends; the exit status is the command's.
#   with_slurm_cluster.sh NODES CPUS_PER_NODE COMMAND [ARGS...]
# e.g. with_slurm_cluster.sh 2 2 salloc -N 2 -n 4 build/launcher/kolorun -np 4 ./train
# Jobs see a /tmp of their node's own: keep their files elsewhere.
set -u
if [ $# -lt 3 ]; then
  echo "usage: with_slurm_cluster.sh NODES CPUS_PER_NODE COMMAND [ARGS...]" >&2
  exit 2
fi
nodes=$1 cpus=$2
shift 2
# shellcheck source=slurm_cluster.sh
source "$(cd "$(dirname "$0")" && pwd)/slurm_cluster.sh"
slurm_cluster_start "$nodes" "$cpus"
slurm_in_cluster "$@"
