#!/usr/bin/env bash
# What flyenv measures on a lent GPU machine (Python 3.12 + torch, no network), one step per call.
#
# Here, on the CPU machine, once per session:
#   bash benchmarks/gpu_session.sh prepare      # wheels of flyenv's dependencies -> .gpu/p0..pN
# Then carry the parts to the GPU machine, one `run` each, in quick succession (the machine stays
# warm ~30 s between calls): carry [".gpu/p1"] with command `true`, ..., carry [".gpu/pN"], and
# for each step below carry [".gpu/p0"] with:
#   bash .gpu/p0/install.sh && bash benchmarks/gpu_session.sh STEP
# STEP (each fits in one 10-minute call):
#   tests  the GPU and MuJoCo Warp tests on cuda:0 (kernels compile on the first one)
#   bench  the warp sweep (256..32768 worlds; cold/warm start) -> env_bench_<device>.json/.png
#   train  PPO, 4096 flies, TRAIN_SECONDS of training (default 420) -> ppo_gpu/curve.json/.png,
#          checkpoint and policy video
# Results go to $OUT (the device tool brings them back), or benchmarks/results without it;
# commit the JSON and PNG under benchmarks/results/ with the device name.
set -euo pipefail
cd "$(dirname "$0")/.."

# flyenv's runtime dependencies and theirs (gpu-wheels downloads with --no-deps), plus pytest.
SPECS=(warp-lang==1.19.0 mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 websockets glfw
       pyopengl mujoco-warp==4.0.0 absl-py etils gymnasium==1.4.0 farama-notifications
       cloudpickle ikpy matplotlib contourpy cycler fonttools kiwisolver pyparsing
       python-dateutil six pillow packaging imageio imageio-ffmpeg pytest iniconfig pluggy
       pygments)

step=${1:-}
if [ "$step" = prepare ]; then
  mkdir -p "$(git rev-parse --git-dir)/info"  # gpu-wheels records .gpu/ in .git/info/exclude
  exec ../shared/tools/gpu-wheels prepare "${SPECS[@]}"
fi

export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export WARP_CACHE_PATH=${WARP_CACHE_PATH:-/tmp/flyenv-warp-cache}  # shared by the steps
out=${OUT:-benchmarks/results}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" || true
python -c "import torch, warp, mujoco, mujoco_warp; print('torch', torch.__version__, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device', \
'warp', warp.__version__, 'mujoco', mujoco.__version__)"

case "$step" in
  tests)
    # Only the modules with GPU/Warp tests: the others import the RL libraries (not carried).
    # addopts is cleared because pytest-xdist is not installed there.
    python -m pytest -o addopts="-ra" -m "gpu or warp" --kernel-cache-dir "$WARP_CACHE_PATH" \
      tests/test_sim.py tests/test_env.py tests/test_mjcf.py 2>&1 | tee "$out/gpu_tests.txt"
    ;;
  bench)
    python benchmarks/env_bench.py --engine warp --out "$out"
    ;;
  train)
    python -m flyenv.cli train --device cuda --num-envs 4096 --total-timesteps 1000000000 \
      --time-limit-s "${TRAIN_SECONDS:-420}" --video-steps 500 --output "$out/ppo_gpu"
    rm -rf "$out/ppo_gpu/tb"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_session.sh prepare|tests|bench|train" >&2
    exit 2
    ;;
esac
