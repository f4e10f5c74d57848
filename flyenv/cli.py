"""The `flyenv` command line.

Usage:
    flyenv demo [--output DIR] [--recording NAME|FILE] [--duration S]
    flyenv data [NAME]
    flyenv replay REFERENCE.npz [--output FILE.mp4] [--steps N] [--tethered]
    flyenv train [--reference FILE.npz] [--device DEV] [--num-envs N] [--total-timesteps N]
                 [--output DIR] [--video-steps N] ... (each field of apps.train_args.PpoArgs)
    flyenv eval CHECKPOINT [--reference FILE_OR_FOLDER...] [--output DIR] [--starts K]
                [--horizon-s S] [--randomization JSON] [--video-steps N] [--device DEV]
    flyenv model [--tethered] [--body FILE] [--output FILE.xml]
    flyenv ik RECORDING|FOLDER... -o OUT_DIR [--workers N] [--solver lm|seqik]
              [--body template|data|FILE.json|OUTPUT.npz] [--align] [--chunk-frames K] [--overlap F]
              [--backend loky|threading|multiprocessing|dask] [--plot] [--overwrite] [--fps HZ]
              [--fps-range LOW HIGH]
    flyenv bench [--engine mujoco|warp|both] [--device DEV] [--num-envs N...] [--steps K]
                 [--warmup K] [--min-time S] [--no-start-times] [--out DIR (flyenv-bench)]

Example:
    flyenv demo --output ./flyenv-demo
    flyenv demo --recording df3d_walk_100 --output ./flyenv-demo-df3d
    torchrun --nproc-per-node 2 -m flyenv train --device cpu   # data-parallel, 2 ranks
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flyenv._version import __version__

if TYPE_CHECKING:
    from flyenv.body.config import BodyConfig
    from flyenv.ik_preprocess.runner import FileResult

# Each subcommand declares its options and imports its modules only when it is the one run, so
# that `flyenv ik` loads neither torch, gymnasium nor matplotlib (unless --plot).
Command = tuple[str, Callable[[argparse.ArgumentParser], None]]


def _add_demo(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--output", type=Path, default=Path("flyenv-demo"),
                      help="folder for the artefacts (default: %(default)s)")
    demo.add_argument("--recording", default=None, metavar="NAME|FILE",
                      help="a sample recording by name (flyenv data lists them, e.g. "
                           "df3d_walk_100) or your own file (pkl, npz, csv) instead of the "
                           "synthetic gait")
    demo.add_argument("--fps", type=float, default=None,
                      help="frame rate [Hz] of a --recording file that does not carry one")
    demo.add_argument("--duration", type=float, default=2.0,
                      help="length of the synthetic gait [s] (default: %(default)s)")
    demo.add_argument("--video-steps", type=int, default=300,
                      help="env steps filmed at most, 500 per simulated second "
                           "(default: %(default)s)")
    demo.set_defaults(func=_demo)


def _add_replay(replay_cmd: argparse.ArgumentParser) -> None:
    replay_cmd.add_argument("reference", type=Path, help="the ReferenceMotion .npz")
    replay_cmd.add_argument("--output", type=Path, default=None,
                            help="the mp4 (default: next to the reference)")
    replay_cmd.add_argument("--steps", type=int, default=500, help="env steps (500 per second)")
    replay_cmd.add_argument("--tethered", action="store_true", help="film the tethered fly")
    replay_cmd.set_defaults(func=_replay)


def _add_train(train_cmd: argparse.ArgumentParser) -> None:
    from flyenv.apps import train_args

    train_args.add_arguments(train_cmd)
    train_cmd.set_defaults(func=_train)


def _add_eval(eval_cmd: argparse.ArgumentParser) -> None:
    eval_cmd.add_argument("checkpoint", type=Path, help="checkpoint.pt of flyenv train")
    eval_cmd.add_argument("--reference", nargs="+", default=None,
                          help="clips (.npz) or folders of clips (default: those the policy "
                               "was trained on)")
    eval_cmd.add_argument("--output", type=Path, default=None,
                          help="folder for eval.json, eval.png, videos (default: eval/ beside "
                               "the checkpoint)")
    eval_cmd.add_argument("--starts", type=int, default=4,
                          help="fixed starts per clip, spread over it (default: %(default)s)")
    eval_cmd.add_argument("--horizon-s", type=float, default=2.0,
                          help="simulated seconds from each start (default: %(default)s)")
    eval_cmd.add_argument("--randomization", default="",
                          help="the perturbed condition: a JSON object of RandomizationConfig "
                               "fields (default: flyenv.apps.evaluate.DEFAULT_PERTURBATION)")
    eval_cmd.add_argument("--video-steps", type=int, default=300,
                          help="env steps of the videos of the worst and best clip (0: none)")
    eval_cmd.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    eval_cmd.add_argument("--seed", type=int, default=0, help="seeds the perturbations")
    eval_cmd.set_defaults(func=_eval)


def _add_model(model: argparse.ArgumentParser) -> None:
    model.add_argument("--tethered", action="store_true", help="thorax fixed in space")
    model.add_argument("--body", type=Path, default=None,
                       help="a body config .json or a ReferenceMotion .npz whose body to build")
    model.add_argument("--output", type=Path, default=None, help="write the model as MJCF here")
    model.set_defaults(func=_model)


def _add_ik(ik: argparse.ArgumentParser) -> None:
    from flyenv.ik_preprocess import runner
    from flyenv.ik_preprocess.limits import FPS_RANGE_HZ

    ik.add_argument("recordings", nargs="+", type=Path,
                    help=".pkl / .npz / .csv recordings (mm), or folders: their recordings and "
                         "those below them, sorted")
    ik.add_argument("-o", "--output", type=Path, required=True,
                    help="folder for <recording stem>.npz (and .png with --plot); recordings "
                         "sharing a name get their parent folders' names too")
    ik.add_argument("--workers", type=int, default=1,
                    help="parallel workers; 1 runs serially, -1 uses all cores (default: 1)")
    ik.add_argument("--solver", choices=runner.SOLVERS, default="lm",
                    help="lm: joint fit of all 7 DOFs per leg; seqik: SeqIKPy's 4 stages "
                         "(default: %(default)s)")
    ik.add_argument("--body", default="template",
                    help="template (default), data (measure the body from each recording), "
                         "a body config .json, or a ReferenceMotion .npz (its body; one measured "
                         "by --body data solves as it did there: its default weights, the floor "
                         "scaled with the fly)")
    ik.add_argument("--frame", choices=runner.FRAMES, default="estimate",
                    help="estimate (default): find the thorax pose per frame from the ThC "
                         "keypoints (root motion when it moves); thorax: the input is in the "
                         "thorax frame already")
    ik.add_argument("--up", type=float, nargs=3, metavar=("X", "Y", "Z"), default=None,
                    help="world up in the input frame for moving recordings (default: from "
                         "the plane the stance claws walk on)")
    ik.add_argument("--align", action="store_true",
                    help="pin each ThC to the body's and scale legs to the body's length")
    ik.add_argument("--chunk-frames", type=int, default=None,
                    help="split each recording into jobs of this many frames (default: whole)")
    ik.add_argument("--overlap", type=int, default=20,
                    help="warm-up frames on each side of a chunk (default: %(default)s)")
    ik.add_argument("--backend", choices=runner.BACKENDS, default="loky",
                    help="joblib backend, or dask (pip install 'flyenv[dask]'); multiprocessing "
                         "hangs if a worker is killed (out of memory), loky and dask go on")
    ik.add_argument("--scheduler", default=None,
                    help="with --backend dask: a scheduler address (default: a local cluster)")
    ik.add_argument("--fps", type=float, default=None,
                    help="frame rate [Hz] of recordings that do not carry one")
    ik.add_argument("--fps-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                    default=FPS_RANGE_HZ,
                    help="frame rates [Hz] accepted (default: %(default)s, what pose tracking "
                         "uses)")
    ik.add_argument("--smoothness", type=float, default=0.0,
                    help="lm: weight of frame-to-frame angle changes [mm^2/rad^2] (default: 0)")
    ik.add_argument("--keypoint-weights", type=float, nargs=4, default=None,
                    metavar=("CTR", "FTI", "TITA", "CLAW"),
                    help="lm: weights of the keypoints' errors, each relative to SeqIKPy's "
                         "stage fit's on its frame; always used as given. Default: 3 1 1.5 6 "
                         "with a template body; with --body data 1000 100 10 1 (SeqIKPy's "
                         "order kept, no keypoint traded for another; see the README). The "
                         "output's metadata records the weights used")
    ik.add_argument("--plot", action="store_true",
                    help="write a PNG per recording: fit error over time and joint angles")
    ik.add_argument("--overwrite", action="store_true",
                    help="replace existing outputs (default: skip them, so a batch resumes)")
    ik.add_argument("--quiet", action="store_true", help="no progress bar")
    ik.set_defaults(func=_ik)


def _add_data(data_cmd: argparse.ArgumentParser) -> None:
    data_cmd.add_argument("name", nargs="?", default=None,
                          help="print only this sample's path (for scripts: "
                               "flyenv ik \"$(flyenv data df3d_walk)\" ...)")
    data_cmd.set_defaults(func=_data)


def _add_bench(bench: argparse.ArgumentParser) -> None:
    from flyenv.apps import bench as benchmark

    benchmark.add_arguments(bench)
    bench.set_defaults(func=_bench)


COMMANDS: dict[str, Command] = {
    "demo": ("the pipeline: keypoints -> IK -> reference -> env -> video and plots", _add_demo),
    "replay": ("video of the fly replaying a ReferenceMotion (zero residuals)", _add_replay),
    "train": ("PPO on the imitation env (flyenv.apps.train): checkpoint, learning curve, "
              "evaluation, video", _add_train),
    "eval": ("a trained policy against the replay on every clip, clean and perturbed: "
             "eval.json, eval.png, videos", _add_eval),
    "model": ("print the fly model; optionally write it as MJCF", _add_model),
    "ik": ("3D pose recordings -> ReferenceMotion files (offline IK)", _add_ik),
    "data": ("the sample recordings shipped with flyenv (names for demo --recording, paths)",
             _add_data),
    "bench": ("throughput of the imitation env: physics alone and full env steps against "
              "num_envs, and start times", _add_bench),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `flyenv` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="flyenv", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"flyenv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (help_text, add) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        if name == chosen:  # only the command run declares (and imports) its options
            add(command)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"flyenv {args.command}: error: {message}", file=sys.stderr)
        return 2


def _load_body(path: Path | None) -> BodyConfig:
    from flyenv.body.config import BodyConfig
    from flyenv.motion import io as motion_io

    if path is None:
        return BodyConfig.default()
    if path.suffix == ".npz":
        return motion_io.load(path).body
    return BodyConfig.from_json(path.read_text(), source=str(path))


def _model(args: argparse.Namespace) -> int:
    import numpy as np

    from flyenv.body import constants as c
    from flyenv.body.mjcf import build_spec

    spec = build_spec(_load_body(args.body), tethered=args.tethered)
    model = spec.compile()
    variant = "tethered" if args.tethered else "free-walking"
    print(f"fly model ({variant}): nq={model.nq} nv={model.nv} nu={model.nu} "
          f"timestep={model.opt.timestep:g} s, units mm/g/s, "
          f"gravity {model.opt.gravity[2]:g} mm/s^2")
    print(f"total mass {sum(model.body_mass) * 1e3:.4f} mg")
    print(f"{'body':<12}{'mass [ug]':>10}")
    for bodyid in range(1, model.nbody):
        print(f"{model.body(bodyid).name:<12}{model.body_mass[bodyid] * 1e6:>10.3f}")
    print(f"\nlegs: {' '.join(c.LEGS)}; {c.NUM_DOFS} DOFs, qpos[{model.nq - c.NUM_DOFS}:] "
          f"and ctrl[0:{c.NUM_DOFS}] in this order:")
    print(f"{'#':>3} {'joint':<16}{'axis':>6}{'range [deg]':>18}  {'actuator':<16}"
          f"{'kp':>6}{'force limit':>13}")
    for dofid, name in enumerate(c.DOF_NAMES):
        joint, actuator = model.joint(name), model.actuator(name)
        lo, hi = np.degrees(joint.range)
        axis = "xyz"[int(np.argmax(np.abs(joint.axis)))]
        print(f"{dofid:>3} {name:<16}{axis:>6}{lo:>9.1f}{hi:>9.1f}  {actuator.name:<16}"
              f"{actuator.gainprm[0]:>6g}{actuator.forcerange[1]:>13g}")
    if model.nu > c.NUM_DOFS:
        gain = model.actuator(c.ADHESION_NAMES[0]).gainprm[0]
        print(f"\nctrl[{c.NUM_DOFS}:{model.nu}]: the tarsi's adhesion ({c.ADHESION_NAMES[0]}"
              f"...), in [0, 1], up to {gain:g} uN each; noslip iterations "
              f"{model.opt.noslip_iterations}")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(spec.to_xml())
        print(f"\nwrote {args.output}")
    return 0


def _ik(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from flyenv.body import constants as c
    from flyenv.body.config import BodyConfig
    from flyenv.ik_preprocess import runner
    from flyenv.ik_preprocess.solver import LmOptions

    template = BodyConfig.default()
    body = args.body
    if body not in runner.BODY_MODES:
        template, body = _load_body(Path(body)), "template"
    weights = {} if args.keypoint_weights is None else {
        "keypoint_weights": tuple(args.keypoint_weights)}
    try:
        lm = LmOptions(smoothness=args.smoothness, **weights)
    except ValueError as err:
        print(f"flyenv ik: {err}", file=sys.stderr)
        return 2
    options = runner.IkOptions(solver=args.solver, body=body, frame=args.frame,
                               up=None if args.up is None else tuple(args.up),
                               align=args.align, fps=args.fps,
                               fps_range=tuple(args.fps_range),
                               chunk_frames=args.chunk_frames, overlap_frames=args.overlap,
                               lm=lm, template=template)
    def holds(folder: Path, found: list[Path], ignored: list[Path]) -> None:
        said = f", ignoring {len(ignored)} output(s) of SeqIKPy or flyenv" if ignored else ""
        print(f"{folder}: {len(found)} recording(s){said}")

    recordings = runner.expand_folders(args.recordings, args.output, on_folder=holds)
    bar = tqdm(total=len(recordings), unit="file", disable=args.quiet)

    failed = 0

    def progress(result: runner.FileResult) -> None:
        nonlocal failed
        bar.update()
        if result.status == "failed":  # counted here, each reason printed once at the end
            failed += 1
            bar.set_postfix(failed=failed)
        elif result.message:  # an output redone: why
            tqdm.write(result.message, file=sys.stderr)
        legs = (result.thorax or {}).get("legs_fitted", [])
        if result.status == "written" and 0 < len(legs) < 3:
            tqdm.write(f"warning: {result.path}: only {legs} have a tracked ThC, which cannot "
                       f"fix the thorax's orientation: the output's frame follows the input's "
                       f"axes (turned only onto the line through the ThC), so it depends on how "
                       f"the recording is oriented", file=sys.stderr)

    with bar:
        report = runner.run(recordings, args.output, options, n_jobs=args.workers,
                            backend=args.backend, overwrite=args.overwrite, plot=args.plot,
                            client=args.scheduler, progress=progress)
    counts = {s: sum(f.status == s for f in report.files) for s in ("written", "skipped",
                                                                     "failed")}
    if report.removed_temporaries:
        print(f"removed {len(report.removed_temporaries)} temporary file(s) of an interrupted "
              f"run")
    skipped = (f", {counts['skipped']} skipped (done already with these options; --overwrite "
               f"to redo)" if counts["skipped"] else "")
    where = f" -> {args.output}" if counts["written"] or counts["skipped"] else ""
    print(f"{counts['written']} written{skipped}, {counts['failed']} failed{where}")
    if counts["written"]:
        rate = report.seconds / report.leg_frames * 1e6
        print(f"{report.leg_frames} leg-frames in {report.seconds:.1f} s ({rate:.1f} us per "
              f"leg-frame, {args.workers} worker(s), solver {args.solver})")
    if counts["written"] > 1:  # one file's table follows below
        print(f"fit error over all files [mm] {'mean':>8}{'p95':>8}")
        for k, name in enumerate(c.KEYPOINTS[1:]):
            print(f"  {name:<12}{report.error_mean_mm[k]:>8.4f}{report.error_p95_mm[k]:>8.4f}")
    for result in report.files:
        if result.status == "written":
            _print_file(result)
    if report.failed:  # last, so they are what the terminal shows; each message once
        print(f"\n{counts['failed']} file(s) failed:", file=sys.stderr)
    for result in report.failed:
        print(f"  {result.message}", file=sys.stderr)
    return 1 if report.failed else 0


def _print_file(result: FileResult) -> None:
    """Per file: root motion, the body, the fit error per keypoint."""
    import numpy as np

    from flyenv.body import constants as c

    print(f"\n{result.path} -> {result.output.name}:")
    seconds = result.num_frames / result.fps
    print(f"  {result.num_frames} frames at {result.fps:.6g} fps ({seconds:.3g} s)")
    present = [leg for leg in c.LEGS if leg not in result.missing_legs]
    if result.missing_legs:
        print(f"  legs: {' '.join(present)}; missing from the recording: "
              f"{' '.join(result.missing_legs)} (NaN angles)")
    thorax = result.thorax
    if thorax is None:
        print("  frame: given as the thorax frame (--frame thorax)")
    elif thorax["root_motion"]:
        print(f"  root motion: yes (thorax travels {thorax['distance_mm']:.2f} mm, turns up to "
              f"{thorax['turn_deg']:.0f} deg; up from {thorax['up_source']})")
    else:
        print(f"  root motion: none (thorax within {thorax['travel_mm']:.3f} mm and "
              f"{thorax['turn_deg']:.1f} deg; canonical thorax frame, layout scale "
              f"{thorax['layout_scale']:.2f})")
    body = result.body
    if body is not None:
        print(f"  body {body.name}: segment lengths [mm] coxa femur tibia tarsus")
        for legid in (c.LEGS.index(leg) for leg in present):
            lengths = " ".join(f"{v:.3f}" for v in body.lengths[legid])
            thc = np.round(body.thc[legid], 3).tolist()
            print(f"    {c.LEGS[legid]:<3} ThC {thc}  {lengths}")
    print(f"  fit error [mm] {'mean':>8}{'p95':>8}")
    for k, name in enumerate(c.KEYPOINTS[1:]):
        print(f"    {name:<12}{result.error_mean_mm[k]:>8.4f}{result.error_p95_mm[k]:>8.4f}")


def _data(args: argparse.Namespace) -> int:
    from flyenv import data

    if args.name is not None:
        print(data.path(args.name))
        return 0
    print(f"sample recordings (flyenv demo --recording NAME; flyenv.data.path(NAME)), in "
          f"{data.DATA_DIR}:")
    for name in data.RECORDINGS:
        sample = data.SAMPLES[name]
        print(f"  {name:<15}{sample.fps:>6g} Hz  {sample.description}")
    print("other files: " + ", ".join(n for n in data.SAMPLES if n not in data.RECORDINGS))
    print(f"licence and provenance: {data.LICENSE} (Apache-2.0, from SeqIKPy)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from flyenv.apps import bench as benchmark

    results, json_path, png_path = benchmark.run_args(args)
    print(benchmark.format_table(results))
    print(f"wrote {json_path} and {png_path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from flyenv.apps.demo import run_demo

    out: Path = args.output
    start = time.perf_counter()
    print(f"flyenv {__version__} demo -> {out.resolve()}")
    result = run_demo(out, recording=args.recording, fps=args.fps, duration_s=args.duration,
                      video_steps=args.video_steps, log=print)
    print(f"wrote:\n  video          {result.video}\n  IK error plot  {result.ik_plot}\n"
          f"  tracking plot  {result.tracking_plot}\n  reference      {result.reference}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def _train(args: argparse.Namespace) -> int:
    from flyenv.apps import train

    result = train.train(train.args_from(args), log=print)
    import torch.distributed as dist

    if dist.is_initialized():  # a torchrun rank: leave the group cleanly
        dist.destroy_process_group()
    if "evaluation" not in result:  # a rank other than 0: rank 0 reports
        return 0
    return 0 if result["evaluation"]["score"] > 0 else 1


def _eval(args: argparse.Namespace) -> int:
    from flyenv.apps.evaluate import evaluate
    from flyenv.apps.train_args import json_option

    randomization = (json_option("randomization", args.randomization) if args.randomization
                     else None)
    result = evaluate(args.checkpoint, args.reference, args.output, starts=args.starts,
                      horizon_s=args.horizon_s, randomization=randomization,
                      video_steps=args.video_steps, device=args.device, seed=args.seed,
                      log=print)
    print("wrote " + ", ".join(result["files"].values()))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from flyenv.apps.replay import replay_video

    output = args.output or args.reference.with_suffix(".mp4")
    video, mean_reward, max_reward = replay_video(args.reference, output, steps=args.steps,
                                                  tethered=args.tethered)
    print(f"mean imitation reward {mean_reward:.3f} of {max_reward:.2f} per step; wrote {video}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
