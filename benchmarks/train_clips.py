"""PPO on real walking clips with randomization and pushes, then `flyenv eval` with a held-out part.

The dataset: the df3d walk (1000 frames at 100 Hz, through `flyenv ik`, cached in the work
folder) split into its first 8 s for training and its last 2 s held out, and the embedded tripod
gait without its root motion (so that all clips are grounded clips with stance-leg odometry, as
the df3d walk is). With `--mirror` and `--speeds`, the df3d training part's mirror image and
copies played at other speeds (`flyenv.motion.augment`) join the training clips; the evaluation
plays the originals, and with `--mirror` also the held-out part's mirror image (unseen too).
With `--keep-shares` the gait weighs as the df3d part and its copies together
(`--clip-weights`), so augmenting the one does not thin out the other's starts.
Training runs `flyenv train` on the training clips with domain randomization and pushes
(`--train-randomization` to train on others) and the given options; the evaluation
runs every clip, held-out one included, for the policy and the replay, clean and perturbed
(always with RANDOMIZATION, so that runs are judged on the same pushes). Results:
benchmarks/results/<name>.json (curve, evaluation and the command lines) and <name>_curve.png,
<name>_eval.png; with `--keep-checkpoint` also checkpoints/<name>.pt (1 MB), the policy a later
run goes on from (`--init-checkpoint`): a work folder under /tmp does not outlive the machine.

`--recipe NAME` adds a named set of training options (`RECIPES`) before the extra ones, so that
a run repeats a recipe by name; its options are written out in the run's `train_command`.

    python benchmarks/train_clips.py --seconds 1200 --name ppo_clips_cpu [-- extra train options]
    python benchmarks/train_clips.py --seconds 4500 --recipe scratch-contact -- --seed 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from flyenv import data
from flyenv.apps.machine import environment_info
from flyenv.motion import AugmentConfig, load, mirror, save, tripod_gait

RESULTS = Path(__file__).resolve().parent / "results"
# Pushes of 5-10 uN (half to one body weight) for 50 ms, twice a second: the weakest of
# `perturbation_sweep.py`'s candidates that topples the replay from a meaningful share of the
# fixed starts (19% of the df3d walk's, 62% of the gait's, 38% of the held-out part's; the 1-3 uN
# pushes of the first committed run toppled none of the training clips').
RANDOMIZATION = {"friction": [0.7, 1.3], "mass_scale": [0.9, 1.1],
                 "actuator_gain_scale": [0.9, 1.1], "push_force_un": [5.0, 10.0],
                 "push_duration_s": 0.05, "push_rate_hz": 2.0}
# Named sets of `flyenv train` options; options after `--` come after them (and win where
# `flyenv train` takes the last of a repeated option).
RECIPES = {
    # The 75-minute parent of the README's push experiments: exploration noise from an eighth
    # of the action box (0.0125 rad of the 0.1 rad residual range), starts that follow failure,
    # a critic that sees the pushes, and the feet paid for following the clip's stance flags.
    "scratch-contact": ["--init-log-std", "-2.079", "--adaptive-starts", "on",
                        "--privileged-critic", "--reward",
                        json.dumps({"weights": {"contact": 0.3}, "scales": {"contact": 10}})],
}


def dataset(work: Path, *, mirrored: bool = False, speeds: tuple[float, ...] = (),
            ) -> tuple[Path, Path, Path]:
    """(training, augmented training, held-out) folders of the clips in the module doc."""
    ik_out = work / "ik"
    walk = ik_out / "df3d_walk.npz"
    if not walk.exists():
        subprocess.run([sys.executable, "-m", "flyenv", "ik", str(data.path("df3d_walk")),
                        "-o", str(ik_out), "--fps", "100", "--quiet"], check=True)
        next(p for p in ik_out.glob("*.npz") if p != walk).rename(walk)
    motion = load(walk)
    train_dir, augmented_dir, held_dir = work / "train", work / "augmented", work / "held_out"
    for folder in (train_dir, augmented_dir, held_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    walk = motion.frames(0, 800)
    save(walk, train_dir / "df3d_walk_0-8s.npz")
    for name, clip in AugmentConfig(mirror=mirrored, speeds=speeds).clips("df3d_walk_0-8s", walk):
        save(clip, augmented_dir / f"{name}.npz")
    held_out = motion.frames(800, 1000)
    save(held_out, held_dir / "df3d_walk_8-10s_held_out.npz")
    if mirrored:  # unseen too: the training saw the mirror of the first 8 s only
        save(mirror(held_out), held_dir / "df3d_walk_8-10s_held_out_mirrored.npz")
    gait = tripod_gait(duration_s=2.0)
    save(gait.replace(root_pos=None, root_quat=None, root_lin_vel=None, root_ang_vel=None),
         train_dir / "tripod_gait_grounded.npz")
    return train_dir, augmented_dir, held_dir


def evaluate(checkpoint: Path | str, references: list, starts: int, horizon_s: float,
             output: Path, device: str = "cpu") -> dict:
    """`flyenv eval` of a checkpoint on RANDOMIZATION's pushes, as every run here is judged.

    Returns the record's part: {"eval_command", "eval" (per clip), "perturbation"}; eval.json
    and eval.png are in `output`.
    """
    eval_cmd = [sys.executable, "-m", "flyenv", "eval", str(checkpoint), "--reference",
                *map(str, references), "--starts", str(starts), "--horizon-s", str(horizon_s),
                "--randomization", json.dumps(RANDOMIZATION), "--video-steps", "0",
                "--device", device, "--output", str(output)]
    subprocess.run(eval_cmd, check=True)
    evaluation = json.loads((Path(output) / "eval.json").read_text())
    return {"eval_command": eval_cmd[1:], "eval": evaluation["clips"],
            "perturbation": evaluation["perturbation"]}


def train_command(args: argparse.Namespace, references: list[str], weights: list[str],
                  run: Path) -> list[str]:
    """The `flyenv train` command line of a run: this script's settings, then the recipe's
    options (`args.recipe`, if any), then the extra ones."""
    recipe = RECIPES[args.recipe] if args.recipe else []
    return [sys.executable, "-m", "flyenv", "train", "--device", "cpu", "--num-envs",
            str(args.num_envs), "--total-timesteps", "1000000000", "--time-limit-s",
            str(args.seconds), "--reference", ",".join(references), "--randomization",
            json.dumps(args.train_randomization), "--eval-steps", "500", "--output", str(run),
            *weights, *recipe, *args.extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1200.0, help="training wall time [s]")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--name", default="ppo_clips_cpu")
    parser.add_argument("--work", type=Path, default=Path("train-clips-work"))
    parser.add_argument("--starts", type=int, default=8)
    parser.add_argument("--horizon-s", type=float, default=2.0)
    parser.add_argument("--train-randomization", type=json.loads, default=RANDOMIZATION,
                        help="the training's randomization and pushes (JSON); the evaluation "
                        "keeps RANDOMIZATION, so a run trained on harder pushes is judged on "
                        "the same ones as the others")
    parser.add_argument("--mirror", action="store_true",
                        help="train on the df3d training part's mirror image too")
    parser.add_argument("--speeds", type=float, nargs="*", default=(),
                        help="train on the df3d training part played at these speeds too")
    parser.add_argument("--keep-shares", action="store_true",
                        help="with --mirror/--speeds, weigh the gait as the df3d part and its "
                        "augmented copies together (flyenv train --clip-weights)")
    parser.add_argument("--keep-checkpoint", action="store_true",
                        help="copy the trained checkpoint to results/checkpoints/NAME.pt")
    parser.add_argument("--recipe", choices=sorted(RECIPES),
                        help="add this named set of flyenv train options (RECIPES) before the "
                        "extra ones")
    parser.add_argument("extra", nargs="*", help="more flyenv train options (after --)")
    args = parser.parse_args()
    train_dir, augmented_dir, held_dir = dataset(args.work, mirrored=args.mirror,
                                                 speeds=tuple(args.speeds))
    references = [str(train_dir)]
    weights = []
    if any(augmented_dir.iterdir()):
        references.append(str(augmented_dir))
        if args.keep_shares:
            copies = len(list(augmented_dir.glob("*.npz")))
            weights = ["--clip-weights", json.dumps({"tripod_gait_grounded": 1 + copies})]
    run = args.work / "run"
    train_cmd = train_command(args, references, weights, run)
    load_before = os.getloadavg()
    with open(args.work / "train.log", "w") as train_log:  # the log survives a cut-off run
        subprocess.run(train_cmd, check=True, stdout=train_log, stderr=subprocess.STDOUT)
    RESULTS.mkdir(exist_ok=True)
    curve = json.loads((run / "curve.json").read_text())
    last = curve["curve"][-1]
    record = {"machine": environment_info("cpu"), "train_command": train_cmd[1:],
              "eval_command": None, "held_out": sorted(p.stem for p in held_dir.glob("*.npz")),
              "load_average_1min": {"before": load_before[0], "after_training": os.getloadavg()[0]},
              "env_steps_per_s": last["env_steps"] / last["wall_s"],
              "train": {k: curve[k] for k in ("clips", "curve", "evaluation", "args")}}
    # The training half is on disk before the evaluation runs.
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=1))
    shutil.copy(run / "curve.png", RESULTS / f"{args.name}_curve.png")
    if args.keep_checkpoint:
        (RESULTS / "checkpoints").mkdir(exist_ok=True)
        shutil.copy(run / "checkpoint.pt", RESULTS / "checkpoints" / f"{args.name}.pt")
    record.update(evaluate(run / "checkpoint.pt", [train_dir, held_dir], args.starts,
                           args.horizon_s, run / "eval"))
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=1))
    shutil.copy(run / "eval" / "eval.png", RESULTS / f"{args.name}_eval.png")


if __name__ == "__main__":
    main()
