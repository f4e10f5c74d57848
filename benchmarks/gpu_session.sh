#!/usr/bin/env bash
# flyenv's one GPU check: everything a lent GPU machine should measure, in one call of < 9 min.
#
# The machine (Python 3.12 with torch, numpy, scipy, matplotlib, pytest, hypothesis; no network)
# lacks MuJoCo, MuJoCo Warp, Warp and Gymnasium. Here, on the CPU machine:
#   GPU_WHEELS=/path/to/gpu-wheels bash benchmarks/gpu_session.sh prepare
# (the workplace's wheel-splitting tool; their wheels -> .gpu/p0..pN)
# It prints the device calls to make, in quick succession (the machine stays warm ~30 s): the
# parts packed into carries of at most 60 MiB with command `true` (4 calls for the 5 parts of
# ~220 MiB), then the check itself with carry [".gpu/p0"] (the installer and the small wheels):
#   bash benchmarks/gpu_session.sh run         # timeout_s 600
# Stages, each under its own time limit and writing its files as it ends, so that a cut-short
# call still returns what finished ($OUT/stages.txt lists each stage's exit code and seconds):
#   env      GPU, driver and package versions                        -> env.txt
#   install  the carried wheels into /tmp/site                       -> install.log
#   tests    the warp and gpu tests on cuda:0 (kernels compile here)  -> tests.log, tests.xml
#   bench    env benchmark, warp: 1024/4096/16384 flies, bare physics and full step, x real
#            time, GPU memory per world                              -> env_bench_<gpu>.json/png
#   contacts the default model (issue 22's feet: tarsus adhesion, noslip 3) against the one
#            before (SLIDING_FEET: neither) at 4096 flies, both at 1e-4 s, side by side: their
#            cost                                   -> env_bench_<gpu>_dt0.0001_vs_adhesion*.json
#   noslip   the default model against it without noslip (adhesion only), likewise: noslip's
#            share                                  -> env_bench_<gpu>_dt0.0001_vs_noslip*.json
#   determinism  MuJoCo Warp's deterministic mode against the default, 4096 worlds, step time
#            and bit-identity                                        -> determinism_cost_<gpu>.json
#   solver   solver iterations per world and per batch at 4096 flies -> solver_iterations_*.json
#   start    cold (empty kernel cache) and warm start, one fresh interpreter each -> start.json
#   train    PPO, 4096 flies, TRAIN_SECONDS (90) of training + evaluation -> ppo_gpu/curve.*
#   clips    a dataset: the df3d walk through flyenv ik, and the embedded gait without root
#            motion (so both are grounded clips with odometry)              -> clips/*.npz
#   train_clips  PPO on that folder, 4096 flies, train_clips.py's randomization and pushes and
#            its scratch-contact recipe (adaptive starts, the contact term paid, a privileged
#            critic: so the pushes, the per-world models and AppendPrivileged run at 4096
#            worlds on CUDA, and the run is the CPU runs' recipe), through torchrun's ranks path (one
#            rank on the one GPU, NCCL), CLIPS_SECONDS (60), then flyenv eval of both clips,
#            policy and replay, clean and perturbed -> ppo_clips/curve.*, eval/eval.*
#   expert_iteration  push_expert_iteration.py on CUDA from the committed polished checkpoint,
#            on train_clips.py's dataset (the df3d walk's first 8 s and the gait; its last 2 s
#            held out): EXIT_ROUNDS (2) rounds of EXIT_EVENTS (4096) pushes, the CPU runs' 768
#            scaled up, then flyenv eval of the student from 64 starts  -> expert_iteration/*
#            (last, so it gets what the call has left; STAGES="install clips expert_iteration"
#            gives it a call of its own)
# `bash benchmarks/gpu_session.sh run --dry-run` runs the same stages here on the CPU (MuJoCo
# Warp on the Warp CPU device, tiny sizes, no install) to test this script; STAGES="env
# contacts" (names) runs only those.
# Results go to $OUT (the device tool brings them back; benchmarks/results/gpu without it);
# commit them under benchmarks/results/ with the device name.
set -uo pipefail
cd "$(dirname "$0")/.."

# What the GPU image lacks (checked against its package list), pinned like pyproject.toml.
SPECS=(warp-lang==1.19.0 mujoco==4.0.1 mujoco-core==4.0.1 mujoco-studio==4.0.1 websockets glfw
       pyopengl mujoco-warp==4.0.0 gymnasium==1.4.0 farama-notifications ikpy imageio-ffmpeg)

cmd=${1:-}
if [ "$cmd" = prepare ]; then
  mkdir -p "$(git rev-parse --git-dir)/info"  # gpu-wheels records .gpu/ in .git/info/exclude
  "${GPU_WHEELS:?set GPU_WHEELS to the gpu-wheels tool that splits wheels for the carry}" \
    prepare "${SPECS[@]}" || exit 1
  # Pack the part folders into as few calls as the 64 MiB carry limit allows (60 MiB each), p0
  # (the installer) in the last call, which runs the check.
  echo "device calls, one right after the other:"
  calls=() sizes=()
  for part in $(ls -d .gpu/p* | sort -V | tac); do
    mb=$(du -sm "$part" | cut -f1)
    placed=0
    for k in "${!calls[@]}"; do
      if [ $((sizes[k] + mb)) -le 60 ]; then
        calls[k]+=" \"$part\""; sizes[k]=$((sizes[k] + mb)); placed=1; break
      fi
    done
    [ "$placed" = 0 ] && { calls+=("\"$part\""); sizes+=("$mb"); }
  done
  last=""
  for k in "${!calls[@]}"; do
    carry="[${calls[k]// /, }]"
    if [[ "${calls[k]}" == *'.gpu/p0"'* ]]; then last=$carry; continue; fi
    echo "  run carry=$carry command='true'   (${sizes[k]} MiB)"
  done
  echo "  run carry=$last timeout_s=600 command='bash benchmarks/gpu_session.sh run'"
  exit 0
fi
if [ "$cmd" != run ]; then
  echo "usage: bash benchmarks/gpu_session.sh prepare | run [--dry-run]" >&2
  exit 2
fi
dry=0
[ "${2:-}" = --dry-run ] && dry=1

out=${OUT:-benchmarks/results/gpu}
mkdir -p "$out"
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
cache=/tmp/flyenv-warp-cache; [ "$dry" = 1 ] && cache=$PWD/.cache/warp
export WARP_CACHE_PATH=${WARP_CACHE_PATH:-$cache}  # shared by the stages
export MUJOCO_GL=${MUJOCO_GL:-egl}
PY=${PYTHON:-python3}
TOTAL=${TOTAL_SECONDS:-530}  # the call's 600 s less start-up and the copy back
begin=$(date +%s)

scale=1  # stage limits are for the GPU; the CPU dry run compiles and steps slower
if [ "$dry" = 1 ]; then
  scale=4; TOTAL=${TOTAL_SECONDS:-2400}
  device=cpu; sizes="4 8"; det_size=4; solver_args="--num-envs 4 --steps 3"; contact_size=4
  train_args="--num-envs 2 --num-steps 4 --total-timesteps 16 --eval-steps 2"
  clips_args="--num-envs 2 --num-steps 4 --total-timesteps 16 --eval-steps 2"
  eval_args="--starts 1 --horizon-s 0.02"
  exit_args="--rounds 1 --events 8 --max-search 2 --candidates 2 --fit-steps 2 --starts 1"
  test_args=(--cpu -k "captured or host or deterministic")
else
  device=cuda; sizes="1024 4096 16384"; det_size=4096; contact_size=4096
  solver_args="--num-envs 4096 --steps 40"
  train_args="--num-envs 4096 --total-timesteps 1000000000 --time-limit-s ${TRAIN_SECONDS:-90}"
  train_args+=" --eval-steps 200"
  clips_args="--num-envs 4096 --total-timesteps 1000000000 --time-limit-s ${CLIPS_SECONDS:-60}"
  clips_args+=" --eval-steps 200"
  eval_args="--starts 16 --horizon-s 2"
  exit_args="--rounds ${EXIT_ROUNDS:-2} --events ${EXIT_EVENTS:-4096} --max-search 512"
  test_args=()
fi

# stage NAME SECONDS COMMAND...: runs COMMAND with its output in $out/NAME.log, cut at SECONDS
# or at what is left of TOTAL, whichever is less; records the exit code and the time.
stage() {
  local name=$1 limit=$(($2 * scale)); shift 2
  if [ -n "${STAGES:-}" ] && [[ " $STAGES " != *" $name "* ]]; then
    return
  fi
  local left=$((TOTAL - ($(date +%s) - begin)))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 5 ]; then
    echo "$name skipped: out of time" | tee -a "$out/stages.txt"
    return
  fi
  local t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc ${limit}s-limit $(( $(date +%s) - t0 ))s" | tee -a "$out/stages.txt"
}

versions() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$PY" -c "import sys, torch, warp, mujoco, mujoco_warp, gymnasium; \
print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device'); \
print('warp', warp.__version__, 'mujoco', mujoco.__version__, 'mujoco_warp', \
mujoco_warp.__version__, 'gymnasium', gymnasium.__version__)" 2>&1
}

export PY device out
start_times() {
  "$PY" - "$device" "$out/start.json" <<'PY'
import json, sys
from flyenv.apps import bench as benchmark
device, path = sys.argv[1], sys.argv[2]
result = benchmark.start_times("warp", device, 1024 if device == "cuda" else 4)
open(path, "w").write(json.dumps(result, indent=1))
print(result)
PY
}

export -f versions start_times
: > "$out/stages.txt"
if [ "$dry" = 0 ]; then
  stage install 60 bash .gpu/p0/install.sh
fi
stage env 60 bash -c versions
[ -f "$out/env.log" ] && cp "$out/env.log" "$out/env.txt"  # absent when STAGES skips env
stage tests 170 "$PY" -m pytest -p no:cacheprovider -o addopts="-ra -p no:benchmark" \
  -m "gpu or warp" --kernel-cache-dir "$WARP_CACHE_PATH" --junitxml "$out/tests.xml" \
  "${test_args[@]}" tests/test_sim.py tests/test_env.py tests/test_host_reads.py
# shellcheck disable=SC2086
stage bench 100 "$PY" benchmarks/env_bench.py --engine warp --device "$device" \
  --num-envs $sizes --steps 20 --warmup 3 --min-time 0.5 --no-start-times --out "$out"
# The contact model's cost: the default (adhesion and noslip's extra solver pass) against the
# model before issue 22, then against it without noslip, at the same step
# (--baseline-physics-dt times the baseline right after each size).
stage contacts 55 "$PY" benchmarks/env_bench.py --engine warp --device "$device" \
  --num-envs "$contact_size" --steps 10 --warmup 2 --min-time 0.5 --no-start-times \
  --physics-dt 1e-4 --baseline-physics-dt 1e-4 --baseline-model-option adhesion_gain_uN=0.0 \
  --baseline-model-option noslip_iterations=0 --out "$out"
stage noslip 35 "$PY" benchmarks/env_bench.py --engine warp --device "$device" \
  --num-envs "$contact_size" --steps 10 --warmup 2 --min-time 0.5 --no-start-times \
  --physics-dt 1e-4 --baseline-physics-dt 1e-4 --baseline-model-option noslip_iterations=0 \
  --out "$out"
stage determinism 45 "$PY" benchmarks/determinism_cost.py --device "$device" \
  --num-worlds "$det_size" --out "$out"
# shellcheck disable=SC2086
stage solver 45 "$PY" benchmarks/solver_iterations.py --device "$device" $solver_args \
  --candidates 100/50,default --scenarios ppo_exploration_0.025rad,random_targets \
  --output "$out/solver_iterations.json"
stage start 60 bash -c start_times
# shellcheck disable=SC2086
stage train 150 "$PY" -m flyenv.cli train --device "$device" $train_args --video-steps 0 \
  --output "$out/ppo_gpu"
rm -rf "$out/ppo_gpu/tb"
make_clips() {
  "$PY" -m flyenv.cli ik "$("$PY" -c 'import flyenv.data as d; print(d.path("df3d_walk"))')" \
    -o "$out/clips" --fps 100 --workers 4 --quiet --overwrite || return 1
  mv "$out"/clips/pose_result__*.npz "$out/clips/df3d_walk.npz"
  "$PY" -c "import sys; from flyenv.motion import save, tripod_gait
gait = tripod_gait(duration_s=2.0)
save(gait.replace(root_pos=None, root_quat=None, root_lin_vel=None, root_ang_vel=None),
     sys.argv[1] + '/tripod_gait.npz')" "$out/clips"
}
train_clips() {
  # benchmarks/train_clips.py's: the CPU runs' training perturbation and recipe (one option a line)
  local randomization recipe
  randomization=$("$PY" -c 'import json, sys; sys.path.insert(0, "benchmarks")
from train_clips import RANDOMIZATION; print(json.dumps(RANDOMIZATION))') || return 1
  mapfile -t recipe < <("$PY" -c 'import sys; sys.path.insert(0, "benchmarks")
from train_clips import RECIPES; print("\n".join(RECIPES["scratch-contact"]))')
  [ "${#recipe[@]}" -gt 0 ] || return 1
  # shellcheck disable=SC2086
  "$PY" -m torch.distributed.run --nproc-per-node 1 -m flyenv train --device "$device" \
    $clips_args --reference "$out/clips" --video-steps 0 \
    --randomization "$randomization" "${recipe[@]}" \
    --output "$out/ppo_clips" || return 1
  # shellcheck disable=SC2086
  "$PY" -m flyenv eval "$out/ppo_clips/checkpoint.pt" --device "$device" $eval_args \
    --video-steps 0 --output "$out/ppo_clips/eval"
}
expert_iteration() {
  local work="$out/expert_iteration"
  mkdir -p "$work/ik" && cp "$out/clips/df3d_walk.npz" "$work/ik/" || return 1
  "$PY" -c 'import sys; from pathlib import Path; sys.path.insert(0, "benchmarks")
from train_clips import dataset; dataset(Path(sys.argv[1]))' "$work" || return 1
  # shellcheck disable=SC2086
  "$PY" benchmarks/push_expert_iteration.py --device "$device" $exit_args --checkpoint \
    benchmarks/results/checkpoints/ppo_clips_cpu-intel_scratch-contact_sil-decision-margin2_polish_132min.pt \
    --train "$work/train" --held-out "$work/held_out" --save "$work/student.pt" \
    --name push_expert_iteration --output "$work"
}
export clips_args eval_args exit_args
export -f make_clips train_clips expert_iteration
stage clips 45 bash -c make_clips
stage train_clips 150 bash -c train_clips
rm -rf "$out/ppo_clips/tb"
stage expert_iteration 300 bash -c expert_iteration
echo "done in $(( $(date +%s) - begin )) s; results in $out" | tee -a "$out/stages.txt"
