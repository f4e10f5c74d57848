"""The whole pipeline on a CPU in a few minutes: keypoints -> IK -> reference -> env -> video.

`run_demo` makes tracking-like keypoints from the embedded tripod gait (forward kinematics, plus
Gaussian tracking noise and dropped keypoints), or takes a user's recording; solves IK
(`flyenv.ik_preprocess.run`, with its error plot); replays the resulting reference in the
tethered and free C MuJoCo fly (tracking plot); then runs it in `FlyImitationVecEnv` with the
reference's own joint targets and writes an mp4 of the free fly with its reference ghost.

Files are named by what they hold: `keypoints_<name>.npz` (the synthetic recording),
`reference_<name>.npz` (the IK's ReferenceMotion), `ik_fit_<name>.png`, `tracking.png`,
`imitation.mp4`, where <name> is `tripod`, the sample's name (`flyenv.data`, e.g.
`df3d_walk_100`) or the recording's file stem.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from flyenv import data
from flyenv.apps.plots import plot_tracking
from flyenv.apps.replay import replay_video
from flyenv.body import constants as c
from flyenv.body.kinematics import forward_kinematics
from flyenv.ik_preprocess import IkOptions
from flyenv.ik_preprocess import run as run_ik
from flyenv.motion import io as motion_io
from flyenv.motion.gait import tripod_gait
from flyenv.sim.tracking import track_reference


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What the demo wrote.

    Attributes:
        recording: the keypoint recording the IK read.
        reference: the ReferenceMotion .npz the IK wrote.
        ik_plot: fit error per keypoint and joint angles (PNG).
        tracking_plot: tethered and free replay tracking (PNG).
        video: the free fly replaying the reference, with its ghost (mp4).
        ik_error_mean_mm: (4,) mean fit error of CTr, FTi, TiTa, Claw.
        mean_reward: mean imitation reward per step of the video's replay (of `max_reward`).
        max_reward: the env's maximum reward per step.
    """

    recording: Path
    reference: Path
    ik_plot: Path
    tracking_plot: Path
    video: Path
    ik_error_mean_mm: np.ndarray
    mean_reward: float
    max_reward: float


def synthetic_recording(path: Path, *, duration_s: float = 2.0, noise_mm: float = 0.005,
                        dropout: float = 0.01, seed: int = 0) -> Path:
    """Writes tracking-like keypoints of the embedded gait as an `.npz` recording.

    Args:
        path: the .npz to write (`keypoints` (T, 6, 5, 3) in the thorax frame, `leg_names`,
            `fps`).
        duration_s: length of the gait [s].
        noise_mm: standard deviation of the Gaussian tracking noise [mm].
        dropout: fraction of keypoints dropped (NaN), as trackers lose points.
        seed: seed of the noise and the dropouts.
    """
    gait = tripod_gait(duration_s=duration_s)
    rng = np.random.default_rng(seed)
    keypoints = forward_kinematics(gait.body, gait.joint_angles)
    keypoints = keypoints + rng.normal(0.0, noise_mm, keypoints.shape)
    dropped = rng.random(keypoints.shape[:3]) < dropout
    dropped[:, :, 0] = False  # the ThC is fixed on the thorax; trackers rarely lose it
    keypoints[dropped] = np.nan
    path.parent.mkdir(parents=True, exist_ok=True)
    with motion_io.atomic_write(path) as f:
        np.savez(f, keypoints=keypoints, leg_names=np.array(c.LEGS), fps=gait.fps)
    return path


def resolve_recording(recording: str | os.PathLike, fps: float | None = None,
                      ) -> tuple[Path, float | None, str]:
    """A recording given by sample name (`flyenv.data.RECORDINGS`) or by path.

    Args:
        recording: a sample name such as "df3d_walk_100", or the path of a recording file.
        fps: frame rate [Hz] the user gave (wins over the sample's).

    Returns:
        (the file, its frame rate [Hz]: `fps`, else the sample's, else None, the name the
        demo's files take: the sample name or the file's stem).

    Raises:
        FileNotFoundError: for neither an existing file nor a sample name, naming the samples
            and the closest one.
    """
    name = str(recording)
    if name in data.RECORDINGS:
        sample = data.sample(name)
        return sample.path, sample.fps if fps is None else fps, name
    path = Path(recording)
    if path.is_file():
        return path, fps, path.stem
    close = difflib.get_close_matches(name, data.RECORDINGS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise FileNotFoundError(f"--recording {name!r} is neither a file nor a sample recording; the "
                            f"samples (flyenv data) are {', '.join(data.RECORDINGS)}.{hint}")


def run_demo(out: Path, *, recording: str | os.PathLike | None = None, fps: float | None = None,
             duration_s: float = 2.0, num_envs: int = 2, video_steps: int = 300,
             log: Callable[[str], None] = lambda line: None) -> DemoResult:
    """Runs the pipeline and writes its artefacts into `out` (see the module doc).

    Args:
        out: output folder.
        recording: a sample recording's name (`flyenv.data.RECORDINGS`, e.g. "df3d_walk_100")
            or a user's recording (any format `flyenv ik` reads); None makes the synthetic one.
        fps: frame rate [Hz] of a recording that does not carry one (SeqIKPy pickles; the
            samples' is known).
        duration_s: length of the synthetic gait [s].
        num_envs: flies in the vector env (world 0 is filmed).
        video_steps: env steps filmed at most (500 per simulated second; the video plays them
            10x slowed down).
        log: receives one line per stage.
    """
    if recording is not None:  # a bad name fails before anything is written
        recording, fps, name = resolve_recording(recording, fps)
    made_out = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    if recording is None:
        name = "tripod"
        recording = synthetic_recording(out / f"keypoints_{name}.npz", duration_s=duration_s)
        log(f"1. keypoints from the embedded tripod gait by forward kinematics, with tracking "
            f"noise and dropouts: {recording}")
    else:
        rate = f" at {fps:g} Hz" if fps is not None else ""
        log(f"1. recording {name}{rate}: {recording}")
    work = out / ".ik"  # the IK writes <recording stem>.npz/.png; renamed below
    report = run_ik([recording], work, IkOptions(fps=fps), n_jobs=1, overwrite=True, plot=True)
    if report.failed:
        if made_out and not any(out.iterdir()):  # a failed demo leaves no empty folder behind
            out.rmdir()
        raise ValueError(f"IK failed: {report.failed[0].message}")
    reference, ik_plot = out / f"reference_{name}.npz", out / f"ik_fit_{name}.png"
    os.replace(work / f"{recording.stem}.npz", reference)
    os.replace(work / f"{recording.stem}.png", ik_plot)
    work.rmdir()
    errors = ", ".join(f"{k} {e * 1e3:.1f}" for k, e in zip(c.KEYPOINTS[1:],
                                                              report.error_mean_mm, strict=True))
    log(f"2. IK ({report.leg_frames} leg-frames in {report.seconds:.1f} s): mean fit error "
        f"[um] {errors}; reference {reference}, plot {ik_plot}")

    motion = motion_io.load(reference)
    results = [track_reference(motion, tethered=tethered) for tethered in (True, False)]
    tracking_plot = plot_tracking(results, out / "tracking.png")
    rms = [np.sqrt(np.nanmean(r.tracking_rms_deg() ** 2)) for r in results]
    log(f"3. replay in C MuJoCo: joint tracking RMS {rms[0]:.2f} deg tethered, {rms[1]:.2f} deg "
        f"free; plot {tracking_plot}")

    video, mean_reward, max_reward = replay_video(reference, out / "imitation.mp4",
                                                  num_envs=num_envs, steps=video_steps)
    log(f"4. vector env ({num_envs} flies), reference targets, zero residual: mean reward "
        f"{mean_reward:.3f} of {max_reward:.2f} per step; video {video}")
    return DemoResult(recording=recording, reference=reference,
                      ik_plot=ik_plot, tracking_plot=tracking_plot,
                      video=video, ik_error_mean_mm=report.error_mean_mm,
                      mean_reward=mean_reward, max_reward=max_reward)
