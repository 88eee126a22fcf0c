#!/bin/bash
# sam2tune on Slurm: one torchrun per allocated node, rendezvous from Slurm's environment, inside an Apptainer
# image when SAM2TUNE_SIF is set (else the checkout's .venv, else python3 on PATH).
#
#   sbatch [--nodes N] [--gres gpu:G] scripts/hpc/train_slurm.sh <bundle|resnet|yolo> [options]
#
#   <bundle>      python -m monai.bundle run training with the bundle's train.json + multi_gpu_train.json;
#                 options are bundle keys: --dataset_dir D --max_epochs 30 ...
#   resnet|yolo   scripts/train_baseline.py --model resnet|yolo --distributed; options are its flags:
#                 --bundle optic_cup_fundus_sam2 --dataset_dir D ...
#
# Environment: SAM2TUNE_REPO (checkout; default $SLURM_SUBMIT_DIR), SAM2TUNE_SIF (Apptainer/Singularity image built
# from scripts/hpc/sam2tune.def), SAM2TUNE_NPROC_PER_NODE (default $SLURM_GPUS_ON_NODE, else 1), SAM2TUNE_PORT
# (default 29400 + job id % 1000), SAM2TUNE_DRY_RUN=1 (print the launch command only).
#
#SBATCH --job-name=sam2tune
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=12:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
target="$1"; shift

# sbatch runs a spooled copy of this file, so the checkout comes from the environment, not from $0.
repo="${SAM2TUNE_REPO:-${SLURM_SUBMIT_DIR:-$PWD}}"
if [[ ! -f "$repo/scripts/train_baseline.py" ]]; then
    echo "error: $repo is not a sam2tune checkout: submit from the repository root or set SAM2TUNE_REPO" >&2
    exit 2
fi
cd "$repo"

if [[ "$target" == resnet || "$target" == yolo ]]; then
    entry=(scripts/train_baseline.py --model "$target" --distributed "$@")
elif [[ -f "bundles/$target/configs/train.json" ]]; then
    configs="['bundles/$target/configs/train.json','bundles/$target/configs/multi_gpu_train.json']"
    entry=(-m monai.bundle run training --config_file "$configs" "$@")
else
    echo "error: '$target' is neither resnet, yolo nor a bundle in $repo/bundles (e.g. optic_cup_fundus_sam2)" >&2
    exit 2
fi

# Rendezvous: the first host of the allocation serves torchrun's c10d store; every node runs one torchrun.
if [[ -n "${SLURM_JOB_NODELIST:-}" ]]; then
    mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
else
    nodes=(localhost)  # the plain local command: one node, this machine
fi
nnodes="${SLURM_NNODES:-${#nodes[@]}}"
master="${nodes[0]}"
port="${SAM2TUNE_PORT:-$((29400 + ${SLURM_JOB_ID:-0} % 1000))}"
gpus="${SLURM_GPUS_ON_NODE:-0}"
gpus="${gpus##*:}"  # "a100:4" -> "4"
nproc="${SAM2TUNE_NPROC_PER_NODE:-$([[ "$gpus" =~ ^[1-9][0-9]*$ ]] && echo "$gpus" || echo 1)}"

if [[ -n "${SAM2TUNE_SIF:-}" ]]; then
    runner=$(command -v apptainer || command -v singularity || true)
    if [[ -z "$runner" ]]; then
        echo "error: SAM2TUNE_SIF is set but neither apptainer nor singularity is on PATH (module load apptainer?)" >&2
        exit 2
    fi
    nv=(); [[ "$gpus" != 0 ]] && nv=(--nv)
    python=("$runner" exec "${nv[@]}" --bind "$repo" --pwd "$repo" "$SAM2TUNE_SIF" python3)
elif [[ -x "$repo/.venv/bin/python" ]]; then
    python=("$repo/.venv/bin/python")
else
    python=(python3)
fi

launch=("${python[@]}" -m torch.distributed.run --nnodes "$nnodes" --nproc_per_node "$nproc"
        --rdzv_backend c10d --rdzv_endpoint "$master:$port" --rdzv_id "${SLURM_JOB_ID:-local}" "${entry[@]}")
echo "[sam2tune] nodes=${nodes[*]} nnodes=$nnodes nproc_per_node=$nproc rendezvous=$master:$port"
echo "[sam2tune] ${launch[*]}"
[[ "${SAM2TUNE_DRY_RUN:-0}" == 1 ]] && exit 0

if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    # one task per node, each running its own torchrun that spawns nproc workers
    srun --nodes "$nnodes" --ntasks "$nnodes" --ntasks-per-node 1 "${launch[@]}"
else
    "${launch[@]}"
fi
