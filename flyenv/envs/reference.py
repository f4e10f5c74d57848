"""Reference clips for the environment: resampled to the control rate and stacked on the device."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from flyenv.body import constants as c
from flyenv.body.config import BodyConfig
from flyenv.body.kinematics import forward_kinematics
from flyenv.motion.augment import AugmentConfig
from flyenv.motion.format import ReferenceMotion
from flyenv.motion.gait import tripod_gait
from flyenv.motion.grounding import ground, leg_stance, odometry
from flyenv.motion.io import load
from flyenv.motion.resample import resample

_CLAW = c.KEYPOINTS.index("Claw")
# Most frames the bank may hold: clips x the longest clip's frames at the control rate (the
# clips are padded to it). Each frame takes about 2 KB while the bank is built (float64 arrays,
# splines, then float32 tensors and the env's frame table), so this caps loading near 4 GB: a
# clip at a very low frame rate lasts long and resamples to millions of frames.
MAX_BANK_FRAMES = 2_000_000
_BANK_BYTES_PER_FRAME = 2048
# The source of the embedded gait (`ReferenceBank.sources`), the reference when none is given.
GAIT_SOURCE = "flyenv.motion.tripod_gait (embedded)"


@dataclasses.dataclass(frozen=True)
class ReferenceBank:
    """Clips at the control rate, padded to the longest one (padding repeats the last frame).

    Attributes:
        names: (nclip,) clip names (file stems, "tripod_gait" for the embedded gait, or
            "clip<i>" for the i-th `ReferenceMotion` given).
        sources: (nclip,) where each clip came from: its file (as given, or found in a
            folder), `GAIT_SOURCE` for the embedded gait, or "(in memory)".
        body: the first clip's body (the one simulated when all clips share it).
        bodies: (nbody,) the distinct bodies the clips were made for, in order of first use;
            they share the joint bounds and differ in ThC positions and segment lengths.
        clip_body: (nclip,) int64, index in `bodies` of each clip's body.
        has_root: whether the clips carry root (thorax) motion (all or none of them).
        lengths: (nclip,) int64, frames of each clip.
        joint_pos: (nclip, T, 42) reference angles [rad]; missing legs hold the standing pose.
        joint_vel: (nclip, T, 42) [rad/s]; 0 for missing legs.
        dof_mask: (nclip, 42) 1.0 for DOFs of legs present in the clip.
        leg_mask: (nclip, 6) 1.0 for legs present.
        claw_pos_b: (nclip, T, 6, 3) claws in the thorax frame, by forward kinematics [mm].
        stance: (nclip, T, 6) 1.0 where the claw is in stance
            (`flyenv.motion.grounding.stance_claws`), 0.0 in swing and for missing legs: the
            adhesion targets of a replay.
        claw_height: (nclip, T, 6) each claw's height above the floor (z = 0) at the reference
            pose (`root_pos_w`, `root_quat_w`) [mm]; stance claws rest at about the grounding's
            claw clearance.
        root_pos_w: (nclip, T, 3) thorax position [mm]. Without root motion: above the origin
            at the grounded height of each frame (`flyenv.motion.grounding.ground`: the stance
            claws rest on the floor), or at the fixed standing height for a clip with fewer
            than three legs.
        root_quat_w: (nclip, T, 4) thorax orientation (w, x, y, z); without root motion the
            grounded pitch and roll (no yaw).
        gravity_b: (nclip, T, 3) gravity's unit direction in the reference's thorax frame (from
            `root_quat_w`; (0, 0, -1) for the fixed standing pose).
        root_lin_vel_w: (nclip, T, 3) [mm/s]; without root motion the stance-leg odometry
            estimate (`flyenv.motion.grounding.odometry`) in the heading frame, 0 for a clip
            with fewer than three legs.
        root_ang_vel_w: (nclip, T, 3) [rad/s]; likewise (yaw rate only).
        root_vel_estimated: the clips have no root motion and their root velocities are the
            odometry estimate (the root velocity reward can use them).
        grounded: (nclip,) bool, which clips without root motion were grounded (False: fixed
            standing height).
    """

    names: tuple[str, ...]
    sources: tuple[str, ...]
    body: BodyConfig
    bodies: tuple[BodyConfig, ...]
    clip_body: torch.Tensor
    has_root: bool
    lengths: torch.Tensor
    joint_pos: torch.Tensor
    joint_vel: torch.Tensor
    dof_mask: torch.Tensor
    leg_mask: torch.Tensor
    claw_pos_b: torch.Tensor
    stance: torch.Tensor
    claw_height: torch.Tensor
    root_pos_w: torch.Tensor
    root_quat_w: torch.Tensor
    gravity_b: torch.Tensor
    root_lin_vel_w: torch.Tensor
    root_ang_vel_w: torch.Tensor
    root_vel_estimated: bool = False
    grounded: tuple[bool, ...] = ()

    @property
    def nclip(self) -> int:
        """Number of clips."""
        return len(self.names)


def load_references(spec: object, control_dt_s: float, device: torch.device, *,
                    standing_height_mm: float, claw_clearance_mm: float,
                    augment: AugmentConfig | None = None) -> ReferenceBank:
    """Loads, checks and resamples the clips of a config's `reference` field.

    Each clip is simulated with the body it was made for (`ReferenceMotion.body`): clips made
    for several bodies (of the same joint bounds) are stacked, each with its body.

    Args:
        spec: None (the embedded tripod gait), a path, a folder of clips (`folder_clips`), a
            `ReferenceMotion`, or a sequence of them.
        control_dt_s: env step [s]; the clips are resampled to it.
        device: torch device of the stacked arrays.
        standing_height_mm: thorax height of clips without root motion that cannot be grounded
            (fewer than three legs) [mm].
        claw_clearance_mm: how far below a claw point the simulated foot's surface is (the
            tarsus capsule's radius of the model the env builds) [mm]; grounded clips rest their
            stance claws this far above the floor.
        augment: clips to add, made from each one loaded (`AugmentConfig`); None adds none.
            The added clips follow the loaded ones, with their source and their own names.

    Raises:
        ValueError: a folder without a loadable clip, clips made for bodies of other joint
            bounds, one too long for the bank (`MAX_BANK_FRAMES`) or shorter than two env steps,
            with joint angles outside its body's ranges, or clips that mix root motion and none.
    """
    items = _as_items(spec)
    clips, names, labels, sources = [], [], [], []
    for i, item in enumerate(items):
        if isinstance(item, tuple):  # (name, motion, source) of a dataset folder or the gait
            names.append(item[0])
            clips.append(item[1])
            sources.append(item[2])
            labels.append(f"reference {item[2]!r}")
        elif isinstance(item, ReferenceMotion):
            clips.append(item)
            names.append(f"clip{i}")
            sources.append("(in memory)")
            labels.append(f"reference clip{i} (FlyImitationConfig.reference[{i}], in memory)")
        elif isinstance(item, str | os.PathLike):
            clips.append(load(item))  # its errors start with the file
            names.append(Path(item).stem)
            sources.append(str(item))
            labels.append(f"reference {str(item)!r}")
        else:
            raise ValueError(f"FlyImitationConfig.reference[{i}] must be a path, a folder or a "
                             f"ReferenceMotion, got {type(item).__name__}")
    if augment is not None:
        for i in range(len(clips)):
            for name, clip in augment.clips(names[i], clips[i]):
                clips.append(clip)
                names.append(name)
                sources.append(sources[i])
                labels.append(f"{labels[i]} augmented as {name!r}")
    bodies: list[BodyConfig] = []
    clip_body = []
    for label, clip in zip(labels, clips, strict=True):
        own = clip.body
        try:
            clip.validate()
        except ValueError as err:
            raise ValueError(f"{label}: {err}") from err
        same = [i for i, b in enumerate(bodies) if _same_geometry(b, own)]
        if not same:
            if bodies and not np.allclose(own.bounds, bodies[0].bounds, rtol=0, atol=1e-9):
                raise ValueError(f"{label} was made for a body ({own.name!r}) whose "
                                 f"joint bounds differ from {bodies[0].name!r}'s; clips of "
                                 f"several bodies must share the joint bounds")
            same = [len(bodies)]
            bodies.append(own)
        clip_body.append(same[0])
    if len({clip.has_root for clip in clips}) > 1:
        raise ValueError(f"reference clips {labels} mix clips with and without root motion; "
                         f"make one environment per kind")
    _check_bank_size(labels, clips, control_dt_s)
    resampled = []
    for label, clip in zip(labels, clips, strict=True):
        if clip.duration_s < 2 * control_dt_s:
            raise ValueError(f"{label} lasts {clip.duration_s:.4g} s, shorter than "
                             f"two env steps ({2 * control_dt_s:.4g} s)")
        resampled.append(resample(clip, control_dt_s))
    bank = _stack(tuple(names), tuple(sources), [bodies[i] for i in clip_body], resampled,
                  device, standing_height_mm, claw_clearance_mm)
    return dataclasses.replace(bank, bodies=tuple(bodies),
                               clip_body=torch.tensor(clip_body, device=device))


def _check_bank_size(labels: list[str], clips: list[ReferenceMotion], control_dt_s: float,
                     ) -> None:
    """Refuses clips whose bank would exceed `MAX_BANK_FRAMES`, before anything is resampled."""
    frames = [int(clip.duration_s / control_dt_s) + 1 for clip in clips]
    longest = int(np.argmax(frames))
    total = len(clips) * frames[longest]
    if total > MAX_BANK_FRAMES:
        gigabytes = total * _BANK_BYTES_PER_FRAME / 1e9
        clip = clips[longest]
        raise ValueError(
            f"{labels[longest]} lasts {clip.duration_s:.6g} s ({clip.num_frames} frames at "
            f"{clip.fps:g} Hz): {frames[longest]} frames at the control "
            f"rate ({1 / control_dt_s:g} Hz), so the bank of {len(clips)} clip(s) padded to it "
            f"would hold {total} frames (about {gigabytes:.3g} GB to build), more than the "
            f"{MAX_BANK_FRAMES} allowed (flyenv.envs.reference.MAX_BANK_FRAMES); cut the clip "
            f"or check its frame rate")


def _as_items(spec: object) -> list:
    if spec is None:
        return [("tripod_gait", tripod_gait(), GAIT_SOURCE)]
    if isinstance(spec, str | os.PathLike | ReferenceMotion):
        spec = [spec]
    if isinstance(spec, Sequence) and len(spec) > 0:
        items = []
        for item in spec:
            is_dir = isinstance(item, str | os.PathLike) and Path(item).is_dir()
            items.extend(folder_clips(item) if is_dir else [item])
        return items
    raise ValueError(f"FlyImitationConfig.reference must be None, a path, a folder, a "
                     f"ReferenceMotion or a non-empty sequence of them, got {spec!r}")


def folder_clips(folder: str | os.PathLike) -> list[tuple[str, ReferenceMotion, str]]:
    """The clips of a dataset folder: (file stem, motion, file) of its `*.npz`, sorted.

    Files that do not load as a `ReferenceMotion` are left out with a warning naming the file and
    why (one bad file does not stop a dataset); a folder without any loadable clip is refused.

    Raises:
        ValueError: the folder holds no loadable `.npz` clip.
    """
    folder = Path(folder)
    clips, bad = [], []
    for path in sorted(folder.glob("*.npz")):
        try:
            clips.append((path.stem, load(path), str(path)))
        except (ValueError, OSError) as err:
            bad.append(f"{path.name}: {err}")
    for line in bad:
        warnings.warn(f"reference folder {str(folder)!r}: left out {line}", RuntimeWarning,
                      stacklevel=3)
    if not clips:
        raise ValueError(f"reference folder {str(folder)!r} holds no loadable ReferenceMotion "
                         f".npz file" + (f" ({len(bad)} failed: {bad[0]})" if bad else ""))
    return clips


def _same_geometry(a: BodyConfig, b: BodyConfig) -> bool:
    return all(np.allclose(getattr(a, f), getattr(b, f), rtol=0, atol=1e-9)
               for f in ("thc", "lengths", "tarsus_tilt", "bounds"))


def _stack(names: tuple[str, ...], sources: tuple[str, ...], bodies: list[BodyConfig],
           clips: list[ReferenceMotion], device: torch.device, standing_height_mm: float,
           claw_clearance_mm: float) -> ReferenceBank:
    # bodies[i] is clip i's body: its claws come from that body's forward kinematics.
    nclip, length = len(clips), max(clip.num_frames for clip in clips)
    stand = np.asarray(c.STANDING_POSE_RAD)
    arrays = {key: np.zeros((nclip, length, *shape)) for key, shape in (
        ("joint_pos", (c.NUM_DOFS,)), ("joint_vel", (c.NUM_DOFS,)),
        ("claw_pos_b", (c.NUM_LEGS, 3)), ("stance", (c.NUM_LEGS,)), ("root_pos_w", (3,)),
        ("root_quat_w", (4,)),
        ("root_lin_vel_w", (3,)), ("root_ang_vel_w", (3,)))}
    dof_mask = np.zeros((nclip, c.NUM_DOFS))
    leg_mask = np.zeros((nclip, c.NUM_LEGS))
    grounded = []
    for clipid, clip in enumerate(clips):
        present = np.repeat(clip.leg_mask > 0, c.DOF_PER_LEG)
        q = np.where(present, clip.joint_angles, stand)
        claws = forward_kinematics(bodies[clipid], q)[:, :, _CLAW]
        values = {
            "joint_pos": q,
            "joint_vel": np.where(present, clip.joint_velocities, 0.0),
            "claw_pos_b": claws,
            "stance": leg_stance(claws, clip.leg_mask > 0, clip.fps),
        }
        if clip.has_root:
            values.update(root_pos_w=clip.root_pos, root_quat_w=clip.root_quat,
                          root_lin_vel_w=clip.root_lin_vel, root_ang_vel_w=clip.root_ang_vel)
        else:
            values.update(_grounded_root(claws[:, clip.leg_mask > 0], clip.fps,
                                         standing_height_mm, claw_clearance_mm))
            grounded.append(clip.leg_mask.sum() >= 3)
        for key, value in values.items():
            value = np.broadcast_to(value, (clip.num_frames, *arrays[key].shape[2:]))
            arrays[key][clipid, :clip.num_frames] = value
            arrays[key][clipid, clip.num_frames:] = value[-1]
        dof_mask[clipid] = present
        leg_mask[clipid] = clip.leg_mask

    quat_xyzw = np.roll(arrays["root_quat_w"].reshape(-1, 4), -1, axis=1)
    arrays["gravity_b"] = Rotation.from_quat(quat_xyzw).inv().apply([0.0, 0.0, -1.0]).reshape(
        nclip, length, 3)
    # A claw's height: the thorax's, plus the claw's offset along the world's up (-gravity).
    arrays["claw_height"] = arrays["root_pos_w"][..., 2:3] - np.einsum(
        "ctlk,ctk->ctl", arrays["claw_pos_b"], arrays["gravity_b"])

    def tensor(value: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(value, dtype=torch.float32, device=device)

    return ReferenceBank(
        names=names, sources=sources, body=bodies[0], bodies=(bodies[0],),
        clip_body=torch.zeros(nclip, dtype=torch.long, device=device),
        has_root=clips[0].has_root,
        root_vel_estimated=not clips[0].has_root and any(grounded), grounded=tuple(grounded),
        lengths=torch.tensor([clip.num_frames for clip in clips], device=device),
        dof_mask=tensor(dof_mask), leg_mask=tensor(leg_mask),
        **{key: tensor(value) for key, value in arrays.items()})


def _grounded_root(claws_b: np.ndarray, fps: float, standing_height_mm: float,
                   claw_clearance_mm: float) -> dict[str, np.ndarray]:
    """Root pose and velocities of a clip without root motion (see `ReferenceBank`)."""
    num_frames = len(claws_b)
    grounding = ground(claws_b, fps, clearance_mm=claw_clearance_mm)
    if grounding is None:  # fewer than three legs: the fixed standing pose
        return {"root_pos_w": np.broadcast_to([0.0, 0.0, standing_height_mm], (num_frames, 3)),
                "root_quat_w": np.broadcast_to([1.0, 0.0, 0.0, 0.0], (num_frames, 4)),
                "root_lin_vel_w": np.zeros((num_frames, 3)),
                "root_ang_vel_w": np.zeros((num_frames, 3))}
    lin_vel, ang_vel = odometry(claws_b, fps, grounding.stance)
    return {"root_pos_w": grounding.root_pos_w, "root_quat_w": grounding.quat_w,
            "root_lin_vel_w": lin_vel, "root_ang_vel_w": ang_vel}
