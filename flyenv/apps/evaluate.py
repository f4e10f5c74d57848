"""`flyenv eval`: a trained policy against the zero-residual replay, per clip, clean and pushed.

Each clip is played from `starts` fixed start frames spread evenly over it, for `horizon_s` (or to
the clip's end), by the deterministic policy of a checkpoint and by the replay (zero residuals:
the reference's own angles as targets), once in the clean world and once perturbed (the env's
domain randomization and pushes, the same samples for both controllers). Per clip and condition
it reports:

- `survived`: fraction of the planned steps done before a termination (a time-out at the clip's
  end counts as survival), averaged over the starts; `completed`: share of starts that never
  terminated;
- `joint_error_deg`: mean absolute joint angle error over the clip's DOFs [deg];
- `path_error_mm`: mean horizontal distance between the thorax's displacement since the start and
  the reference's (its root motion, or for clips without one the path of its stance-leg
  odometry, `flyenv.motion.grounding`: the heading-frame velocity integrated along the
  integrated yaw rate, from the start's heading, which the replay starts with) [mm]; free flies
  only;
- `forward_speed_mm_s` and `ref_forward_speed_mm_s`: thorax velocity along its heading [mm/s];
- `score` (reward per step / the env's maximum) and `reward/<term>` per step;
- `policy_vs_replay`: the paired difference of survival (the same starts and perturbation
  samples for both): its mean over the starts with a 95% bootstrap interval, and the starts only
  the policy (`policy_only`) or only the replay (`replay_only`) completed. A gain is clear where
  the interval's lower end is above 0.

Errors and rewards are means over the steps each world was alive. Everything lands in
`OUTPUT/eval.json`, a figure `OUTPUT/eval.png` (per clip: policy against replay, clean against
perturbed, and the paired gain with its interval) and, optionally, videos of the policy on the
worst and the best clip.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flyenv.apps.train import Agent, PpoArgs, policy_env, policy_statistics
from flyenv.apps.train_args import env_settings
from flyenv.body import constants as c
from flyenv.envs import FlyImitationVecEnv
from flyenv.envs.observations import quat_rotate_inverse, rotate_yaw
from flyenv.wrappers import NormalizeObservation
from flyenv.wrappers.record_video import record_episode

Log = Callable[[str], None]
# The perturbed condition unless told otherwise: contacts, masses and pushes of a few uN (the
# fly weighs about 10 uN) twice a second.
DEFAULT_PERTURBATION: dict[str, Any] = {"friction": (0.5, 1.5), "mass_scale": (0.8, 1.2),
                                        "actuator_gain_scale": (0.8, 1.2),
                                        "push_force_un": (1.0, 5.0), "push_rate_hz": 2.0}
CONDITIONS = ("clean", "perturbed")
CONTROLLERS = ("policy", "replay")
_METRICS = ("survived", "completed", "joint_error_deg", "path_error_mm", "forward_speed_mm_s",
            "ref_forward_speed_mm_s", "score")


@dataclasses.dataclass(frozen=True)
class Policy:
    """A trained policy as a checkpoint holds it: the agent, its normalizer, its settings."""

    agent: Agent
    obs_norm: dict[str, torch.Tensor]
    args: PpoArgs

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Policy:
        """Reads a `flyenv train` checkpoint.

        Raises:
            ValueError: naming the file, when it is not a flyenv PPO checkpoint.
        """
        path = Path(path)
        try:
            state = torch.load(path, map_location=device, weights_only=False)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
            raise ValueError(f"{path}: not a flyenv train checkpoint ({type(err).__name__}: "
                             f"{err})") from err
        return cls.from_state(state, device, str(path))

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str = "cpu",
                   source: str = "the checkpoint") -> Policy:
        """The policy of a checkpoint's dict (`torch.load` of a `flyenv train` checkpoint).

        Raises:
            ValueError: naming `source`, when the dict is not a flyenv PPO checkpoint's.
        """
        try:
            known = {f.name for f in dataclasses.fields(PpoArgs)}
            args = PpoArgs(**{k: v for k, v in state["args"].items() if k in known})
            weights = state["agent"]
            obs_norm = state["obs_norm"]
            # A privileged critic reads more than the policy (`PpoArgs.privileged_critic`).
            obs_dim = weights["actor.0.weight"].shape[1]
            critic_dim = weights["critic.0.weight"].shape[1]
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{source}: not a flyenv train checkpoint (expected the keys "
                             f"'agent', 'obs_norm' and 'args'; {type(err).__name__}: {err})"
                             ) from err
        act_dim = weights["log_std"].shape[0]
        agent = Agent(obs_dim, act_dim, args.hidden, weights["action_scale"], args.init_log_std,
                      critic_dim=critic_dim)
        agent.load_state_dict(weights)
        return cls(agent.to(device).eval(), policy_statistics(obs_norm, obs_dim), args)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """(num_envs, num_actions) the deterministic action (the mean) for normalized obs."""
        with torch.no_grad():
            return self.agent.dist(obs).mean


def play_settings(policy: Policy) -> dict[str, Any]:
    """The env settings the policy was trained in, less what only training uses.

    Its randomization and adaptive starts are dropped: an evaluation plays its own
    perturbations from fixed starts. So are its augmentation and clip weights: it plays the
    clips themselves, every one from the same number of starts.
    """
    settings = env_settings(policy.args)
    settings.pop("augment", None)
    settings.pop("clip_weights", None)
    settings.pop("randomization", None)
    settings.pop("adaptive_starts", None)
    return settings


def evaluate(checkpoint: str | Path, references: Sequence[str] | None = None,
             output: str | Path | None = None, *, starts: int = 4, horizon_s: float = 2.0,
             randomization: dict[str, Any] | None = None, video_steps: int = 300,
             device: str = "cpu", seed: int = 0, log: Log = lambda line: None) -> dict:
    """Evaluates a checkpoint's policy and the replay on every clip (see the module doc).

    Args:
        checkpoint: the `checkpoint.pt` of `flyenv train`.
        references: clips or folders of clips; None: the clips the policy was trained on.
        output: folder for eval.json, eval.png and the videos (default: beside the checkpoint,
            `eval/`).
        starts: fixed starts per clip, evenly spread over its frames.
        horizon_s: simulated time from each start [s] (less where the clip ends first).
        randomization: the perturbed condition's `RandomizationConfig` fields (default
            `DEFAULT_PERTURBATION`).
        video_steps: env steps of each video (worst and best clip, the policy in the clean
            world); 0: no video.
        device: torch device of the env and the policy.
        seed: seeds the perturbations (the same for the policy and the replay).
        log: receives a line per clip and condition.

    Returns:
        The contents of eval.json.
    """
    if not (isinstance(starts, int) and starts >= 1 and horizon_s > 0):
        raise ValueError(f"evaluate: starts must be an int >= 1 and horizon_s > 0, got "
                         f"{starts!r}, {horizon_s!r}")
    policy = Policy.load(checkpoint, device)
    out = Path(output) if output is not None else Path(checkpoint).parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    settings = play_settings(policy)
    if references:
        settings["reference"] = tuple(str(r) for r in references)
    perturbation = dict(DEFAULT_PERTURBATION if randomization is None else randomization)
    runs: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    names: tuple[str, ...] = ()
    for condition in CONDITIONS:
        env = _make_env(policy, settings, starts, horizon_s, device,
                        perturbation if condition == "perturbed" else None)
        names = env.unwrapped.ref.names
        runs[condition] = {name: _run(env, policy, name, starts, seed)
                           for name in CONTROLLERS}
        env.close()
    clips = {clip: {cond: {**{ctrl: _clip_summary(runs[cond][ctrl], k, starts)
                              for ctrl in CONTROLLERS},
                           "policy_vs_replay": _paired(runs[cond], k, starts, seed)}
                    for cond in CONDITIONS}
             for k, clip in enumerate(names)}
    for clip, conditions in clips.items():
        for cond, result in conditions.items():
            gain = result["policy_vs_replay"]
            low, high = gain["survived_gain_ci95"]
            log(f"{clip} {cond}: survived policy {result['policy']['survived']:.2f} replay "
                f"{result['replay']['survived']:.2f} (gain {gain['survived_gain']:+.3f}, 95% "
                f"interval {low:+.3f} to {high:+.3f}); joint error policy "
                f"{result['policy']['joint_error_deg']:.2f} deg replay "
                f"{result['replay']['joint_error_deg']:.2f} deg")
    result = {"checkpoint": str(checkpoint), "clips": clips, "starts": starts,
              "horizon_s": horizon_s, "perturbation": perturbation, "seed": seed,
              "trained_on": policy.args.reference or "(embedded tripod gait)",
              "files": {"json": str(out / "eval.json"), "figure": str(out / "eval.png")}}
    plot(clips, out / "eval.png", title=f"{Path(checkpoint).parent.name}: {starts} starts x "
                                        f"{horizon_s:g} s per clip")
    (out / "eval.json").write_text(json.dumps(result, indent=1))
    if video_steps > 0:
        result["files"].update(_videos(policy, settings, clips, video_steps, device, out, log))
        (out / "eval.json").write_text(json.dumps(result, indent=1))
    return result


def _make_env(policy: Policy, settings: dict[str, Any], starts: int, horizon_s: float,
              device: str, randomization: dict[str, Any] | None) -> NormalizeObservation:
    probe = FlyImitationVecEnv(num_envs=1, device=device, **settings)
    nclip, dt = probe.ref.nclip, probe.config.control_dt_s
    probe.close()
    extra = {} if randomization is None else {"randomization": randomization}
    env = policy_env(policy.obs_norm, num_envs=nclip * starts, device=device,
                     autoreset_mode="disabled", max_episode_steps=max(1, round(horizon_s / dt)),
                     **settings, **extra)
    if env.single_observation_space.shape[0] != policy.obs_norm["mean"].shape[0]:
        raise ValueError(f"the checkpoint's policy observes {policy.obs_norm['mean'].shape[0]} "
                         f"values, this env {env.single_observation_space.shape[0]}")
    return env


def _run(wrapped: NormalizeObservation, policy: Policy, controller: str, starts: int,
         seed: int) -> dict[str, np.ndarray]:
    """Plays every (clip, start) world to its horizon; per-world sums and counts, on the host."""
    env: FlyImitationVecEnv = wrapped.unwrapped
    ref, n, dev = env.ref, env.num_envs, env.device
    clip = torch.arange(ref.nclip, device=dev).repeat_interleave(starts)
    slot = torch.arange(starts, device=dev).repeat(ref.nclip)
    frame = ((ref.lengths[clip] - 2) * slot / starts).long()
    obs, _ = wrapped.reset(seed=seed, options={"clip": clip, "frame": frame})
    dt = env.config.control_dt_s
    planned = torch.minimum(ref.lengths[clip] - 1 - frame,
                            torch.full_like(frame, env.config.max_episode_steps))
    free = not env.config.tethered
    start_pos = env.engine.qpos[:, :3].float().clone()
    ref_disp = torch.zeros(n, 3, device=dev)
    ref_yaw = torch.zeros(n, device=dev)  # the reference's heading since the start [rad]
    alive = torch.ones(n, dtype=torch.bool, device=dev)
    sums = {k: torch.zeros(n, device=dev) for k in (
        "steps", "survived", "joint_error_deg", "path_error_mm", "forward_speed_mm_s",
        "ref_forward_speed_mm_s", "reward", *(f"reward/{t}" for t in env.terms))}
    steps = int(planned.max())
    for _ in range(steps):
        action = policy.act(obs) if controller == "policy" else env.replay_action()
        obs, reward, terminated, truncated, info = wrapped.step(action)
        now = info["frame"]
        ref_pos = ref.root_pos_w[clip, now]
        if ref.has_root:
            ref_disp = ref_pos - ref.root_pos_w[clip, frame]
        else:  # the odometry estimate (heading frame), integrated with its yaw rate
            ref_disp = ref_disp + rotate_yaw(ref.root_lin_vel_w[clip, now], ref_yaw) * dt
            ref_yaw = ref_yaw + ref.root_ang_vel_w[clip, now, 2] * dt
        qpos, qvel = env.engine.qpos.float(), env.engine.qvel.float()
        mask = ref.dof_mask[clip]
        err = ((qpos[:, -c.NUM_DOFS:] - ref.joint_pos[clip, now]).abs() * mask).sum(1)
        values = {"joint_error_deg": torch.rad2deg(err / mask.sum(1)), "reward": reward,
                  **{f"reward/{t}": info[f"reward/{t}"] for t in env.terms}}
        if free:
            disp = qpos[:, :3] - start_pos
            values["path_error_mm"] = (disp[:, :2] - ref_disp[:, :2]).norm(dim=1)
            values["forward_speed_mm_s"] = quat_rotate_inverse(qpos[:, 3:7], qvel[:, :3])[:, 0]
            values["ref_forward_speed_mm_s"] = quat_rotate_inverse(
                ref.root_quat_w[clip, now], ref.root_lin_vel_w[clip, now])[:, 0]
        counted = alive & torch.isfinite(qpos).all(dim=1)
        sums["steps"] += counted.float()
        for key, value in values.items():
            sums[key] += torch.where(counted, torch.nan_to_num(value), 0.0)
        sums["survived"] += (alive & ~terminated).float()
        alive = alive & ~(terminated | truncated)
    result = {k: v.cpu().numpy() for k, v in sums.items()}
    result["planned"] = planned.cpu().numpy().astype(float)
    result["free"] = np.full(n, free)
    result["max_reward"] = np.full(n, env.max_reward)
    return result


def _survived(run: dict[str, np.ndarray], clipid: int, starts: int) -> np.ndarray:
    """(starts,) fraction of the planned steps each start of clip `clipid` survived."""
    worlds = slice(clipid * starts, (clipid + 1) * starts)
    return np.minimum(run["survived"][worlds] / np.maximum(run["planned"][worlds], 1), 1.0)


def paired_survival(a: np.ndarray, b: np.ndarray, seed: int) -> dict[str, Any]:
    """A's survival minus B's over the same starts and perturbation samples.

    Args:
        a: (starts,) fraction of the planned steps each start survived, for A.
        b: (starts,) the same for B.
        seed: the bootstrap's.

    Returns:
        `survived_gain` (the mean difference), `survived_gain_ci95` (its 95% percentile
        bootstrap interval) and `a_only` / `b_only`, the starts only A or only B completed.
    """
    from scipy.stats import bootstrap

    gain = a - b
    if gain.size > 1:  # percentile intervals stay defined when every start gives the same gain
        interval = bootstrap((gain,), np.mean, confidence_level=0.95, method="percentile",
                             random_state=seed).confidence_interval
        ci = [float(interval.low), float(interval.high)]
    else:
        ci = [float(gain[0]), float(gain[0])]
    return {"survived_gain": float(gain.mean()), "survived_gain_ci95": ci,
            "a_only": int(((a >= 1) & (b < 1)).sum()),
            "b_only": int(((b >= 1) & (a < 1)).sum())}


def _paired(runs: dict[str, dict[str, np.ndarray]], clipid: int, starts: int,
            seed: int) -> dict[str, Any]:
    """The policy's survival minus the replay's, start by start (`policy_vs_replay`)."""
    paired = paired_survival(*(_survived(runs[ctrl], clipid, starts) for ctrl in CONTROLLERS),
                             seed)
    paired["policy_only"], paired["replay_only"] = paired.pop("a_only"), paired.pop("b_only")
    return paired


def _clip_summary(run: dict[str, np.ndarray], clipid: int, starts: int) -> dict[str, Any]:
    worlds = slice(clipid * starts, (clipid + 1) * starts)
    part = {k: v[worlds] for k, v in run.items()}
    steps = part["steps"].sum()

    def mean(key: str) -> float | None:
        return float(part[key].sum() / steps) if steps else None

    survived = _survived(run, clipid, starts)
    summary: dict[str, Any] = {
        "survived_per_start": [round(float(v), 4) for v in survived],
        "survived": float(survived.mean()), "completed": float((survived >= 1).mean()),
        "joint_error_deg": mean("joint_error_deg"),
        "score": (mean("reward") or 0.0) / float(part["max_reward"][0])}
    if part["free"][0]:
        for key in ("path_error_mm", "forward_speed_mm_s", "ref_forward_speed_mm_s"):
            summary[key] = mean(key)
    summary.update({k: mean(k) for k in part if k.startswith("reward/")})
    return summary


def plot(clips: dict[str, dict], path: Path, title: str = "") -> Path:
    """Per clip: survival, joint error and the paired survival gain, clean and perturbed.

    Bars of the policy and the replay for survival and joint error; below, the gain (policy -
    replay) with its 95% interval over the starts.

    Returns:
        The PNG written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(clips)
    bars = [(cond, ctrl) for cond in CONDITIONS for ctrl in CONTROLLERS]
    colors = {"policy": "tab:blue", "replay": "tab:gray"}
    fig, axes = plt.subplots(3, 1, figsize=(max(8.0, 1.6 * len(names) + 2), 8.5), sharex=True)
    width = 0.8 / len(bars)
    x = np.arange(len(names))
    for ax, key, label in ((axes[0], "survived", "fraction of the horizon survived"),
                           (axes[1], "joint_error_deg", "mean joint error [deg]")):
        for k, (cond, ctrl) in enumerate(bars):
            values = [clips[name][cond][ctrl][key] for name in names]
            values = [math.nan if v is None else v for v in values]
            ax.bar(x + (k - (len(bars) - 1) / 2) * width, values, width, color=colors[ctrl],
                   hatch="//" if cond == "perturbed" else None, edgecolor="white",
                   label=f"{ctrl}, {cond}")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(0, 1.05)
    half = 0.8 / len(CONDITIONS)
    for k, cond in enumerate(CONDITIONS):
        gains = [clips[name][cond].get("policy_vs_replay") for name in names]
        mean = [math.nan if g is None else g["survived_gain"] for g in gains]
        low = [0.0 if g is None else g["survived_gain"] - g["survived_gain_ci95"][0] for g in gains]
        high = [0.0 if g is None else g["survived_gain_ci95"][1] - g["survived_gain"]
                for g in gains]
        axes[2].bar(x + (k - (len(CONDITIONS) - 1) / 2) * half, mean, half, yerr=[low, high],
                    capsize=3, color="tab:blue", edgecolor="white",
                    hatch="//" if cond == "perturbed" else None, label=cond)
    axes[2].axhline(0.0, color="black", linewidth=0.8)
    axes[2].set_ylabel("survival gain, policy - replay\n(95% interval over the starts)")
    axes[2].grid(axis="y", alpha=0.3)
    axes[2].legend(fontsize=8)
    axes[2].set_xticks(x, names, rotation=20 if len(names) > 4 else 0)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=4, fontsize=8, loc="upper center",
               bbox_to_anchor=(0.5, 0.95))
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _videos(policy: Policy, settings: dict[str, Any], clips: dict[str, dict], steps: int,
            device: str, out: Path, log: Log) -> dict[str, str]:
    # Worst and best clip: perturbed survival, then clean joint error.
    def rank(name: str) -> tuple[float, float]:
        result = clips[name]
        return (result["perturbed"]["policy"]["survived"],
                -(result["clean"]["policy"]["joint_error_deg"] or 0.0))

    ordered = sorted(clips, key=rank)
    files = {}
    for which, name in (("worst", ordered[0]), ("best", ordered[-1])):
        if which == "best" and len(ordered) == 1:
            break
        clipid = list(clips).index(name)
        env = policy_env(policy.obs_norm, num_envs=1, device=device,
                         autoreset_mode="disabled", render_mode="rgb_array", **settings)
        try:
            clip = torch.tensor([clipid], device=env.unwrapped.device)
            zero = torch.zeros_like(clip)
            path = out / f"{which}_{name}.mp4"
            record_episode(env, policy.act, path, steps=steps,
                           reset_options={"clip": clip, "frame": zero})
            files[f"video_{which}"] = str(path)
        except Exception as err:  # any rendering failure costs the video only
            message = f"video of {name} not written ({type(err).__name__}: {err})"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            log(f"warning: {message}")
        finally:
            env.close()
    return files
