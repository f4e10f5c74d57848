"""Why PPO barely learns the df3d walk (issue 23): terminations, reward scales, log_std, variants.

Four measurements on one reference (the df3d walk through `flyenv ik --fps 100`), each adding its
section to benchmarks/results/ppo_diagnosis_<machine>.json:

1. `terminations`: from fresh random starts, N worlds for up to one episode (1000 steps), the
   zero-residual replay against Gaussian residual noise of several std [rad] (0.025 is the
   untrained policy's: init_log_std -1.386 of the 0.1 rad range): each world's first episode
   length and why it ended.
2. `rewards` (same runs): each term's mean and spread, weighted, and how much of it the last
   step's noise explains (correlation of the term with that step's |noise|^2, and with the
   sum over the last 10 steps').
3. `gradients`: a few PPO iterations at the defaults (`flyenv.apps.train.collect` / `update`),
   the gradient norms of log_std, the actor and the critic per minibatch (before clipping), how
   often the actor's is clipped, and what Adam at the annealed learning rate can move log_std.
4. `training`: short `flyenv.apps.train.train` runs of the default and variants, same seed and
   budget: rollout score, evaluation against the replay, episode lengths and causes.

    python benchmarks/ppo_diagnosis.py REFERENCE.npz [--parts 1,2,3,4] [--variants JSON]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from flyenv.apps.machine import environment_info
from flyenv.apps.train import Agent, Rollout, collect, make_optimizer, train, update
from flyenv.apps.train_args import PpoArgs, env_settings
from flyenv.envs.imitation import TERMINATIONS
from flyenv.wrappers import EpisodeStatistics, NormalizeObservation

RESULTS = Path(__file__).resolve().parent / "results"


def make_env(args: PpoArgs, **overrides: object) -> gym.vector.VectorEnv:
    """The env `train` builds (SAME_STEP autoreset), on the CPU."""
    return gym.make_vec("flyenv/FlyImitation-v0", num_envs=args.num_envs, device="cpu",
                        autoreset_mode="same_step", **{**env_settings(args), **overrides})


def first_episodes(args: PpoArgs, noise_rad: float, steps: int, seed: int) -> dict:
    """Each world's first episode under `noise_rad` Gaussian residuals (0: the replay)."""
    env = make_env(args)
    env.reset(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    n = env.num_envs
    alive = torch.ones(n, dtype=torch.bool)
    length = torch.full((n,), steps)
    cause = ["running"] * n
    terms = {t: [] for t in env.terms}
    noise_sq, recent, recent_sq = [], [], []
    for step in range(steps):
        eps = noise_rad * torch.randn(n, env.num_actions, generator=gen)
        _, _, terminated, truncated, info = env.step(env.replay_action() + eps)
        for t in env.terms:  # the step's terms of worlds still in their first episode
            terms[t].append(info[f"reward/{t}"][alive])
        noise_sq.append((eps ** 2).sum(1)[alive])
        recent = [*recent[-9:], (eps ** 2).sum(1)]  # this step's and the 9 before
        recent_sq.append(torch.stack(recent).sum(0)[alive])
        for w in torch.nonzero(alive & (terminated | truncated)).flatten().tolist():
            length[w] = step + 1
            cause[w] = next((k for k in TERMINATIONS if bool(info[f"termination/{k}"][w])),
                            "truncated")
        alive &= ~(terminated | truncated)
        if not alive.any():
            break
    weights = dict(zip(env.terms, env._weights.tolist(), strict=True))
    eps_sq, eps_sq_10 = torch.cat(noise_sq), torch.cat(recent_sq)
    reward_terms = {}
    for t, rows in terms.items():
        v = torch.cat(rows)
        corr, corr_10 = (float(torch.corrcoef(torch.stack([v, e]))[0, 1]) if noise_rad else 0.0
                         for e in (eps_sq, eps_sq_10))
        reward_terms[t] = {"mean": float(v.mean()), "std": float(v.std()),
                           "weighted_mean": weights[t] * float(v.mean()),
                           "weighted_std": weights[t] * float(v.std()),
                           "corr_with_step_noise_sq": corr,
                           "corr_with_noise_sq_last_10_steps": corr_10}
    env.close()
    lengths = length.numpy()
    return {"noise_rad": noise_rad, "worlds": n, "steps": steps,
            "length_quantiles": dict(zip(("min", "q25", "median", "q75", "max"),
                                         np.quantile(lengths, [0, .25, .5, .75, 1]).tolist(),
                                         strict=True)),
            "mean_length": float(lengths.mean()),
            "causes": {k: cause.count(k) for k in sorted(set(cause))},
            "reward_terms": reward_terms, "max_reward": env.max_reward}


def gradients(args: PpoArgs, iterations: int) -> dict:
    """Gradient norms per minibatch over `iterations` default PPO iterations (see module doc)."""
    torch.manual_seed(args.seed)
    envs = NormalizeObservation(EpisodeStatistics(make_env(args)))
    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    scale = torch.as_tensor(envs.single_action_space.high)
    agent = Agent(obs_dim, act_dim, args.hidden, scale, args.init_log_std)
    optimizer = make_optimizer(agent, args.learning_rate)
    grads: dict[str, list[float]] = {"log_std": [], "actor_last": [], "actor": [], "critic": []}
    log_std_grad = []
    hooks = [agent.log_std.register_hook(lambda g: log_std_grad.append(g.clone()))]
    rollout = Rollout.zeros(args.num_steps, args.num_envs, obs_dim, act_dim, torch.device("cpu"))
    obs, _ = envs.reset(seed=args.seed)
    log_std_path = [float(agent.log_std.mean())]
    # Raw gradients (hooks on the parameters fire before any clipping), summed per minibatch
    # and recorded when the optimizer steps.
    sq: dict[str, float] = {}
    groups = {"log_std": ["log_std"], "actor_last": ["actor.4.weight", "actor.4.bias"],
              "actor": [n for n, _ in agent.named_parameters() if n.startswith("actor.")],
              "critic": [n for n, _ in agent.named_parameters() if n.startswith("critic.")]}

    def add(name: str, grad: torch.Tensor) -> None:
        sq[name] = sq.get(name, 0.0) + float(grad.pow(2).sum())

    for name, p in agent.named_parameters():
        hooks.append(p.register_hook(lambda grad, name=name: add(name, grad)))

    def record(*_: object) -> None:
        for key, names in groups.items():
            grads[key].append(sum(sq.get(n, 0.0) for n in names) ** 0.5)
        sq.clear()

    hooks.append(optimizer.register_step_pre_hook(record))
    for _ in range(iterations):
        obs = collect(agent, envs, obs, rollout, args.gamma)
        update(agent, optimizer, rollout, obs, args)
        log_std_path.append(float(agent.log_std.mean()))
    for h in hooks:
        h.remove()
    g = torch.stack(log_std_grad)  # (minibatches, act_dim)
    envs.close()
    num_iterations = 1_000_000 // (args.num_envs * args.num_steps)
    steps_per_iter = args.update_epochs * args.num_minibatches
    lr_sum = args.learning_rate * steps_per_iter * sum(
        1 - i / num_iterations for i in range(num_iterations))
    summary = {k: {"median": float(np.median(v)), "max": float(np.max(v))}
               for k, v in grads.items()}
    actor_total = np.hypot(grads["actor"], grads["log_std"])
    return {"iterations": iterations, "minibatches": len(grads["actor"]),
            "grad_norm": summary,
            "actor_clipped_fraction": float((actor_total > args.max_grad_norm).mean()),
            "log_std_sign_consistency": float((g.mean(0).abs() / g.abs().mean(0)).mean()),
            "log_std_mean_path": log_std_path,
            "max_log_std_change_in_1M_steps_64_envs": lr_sum,
            "note": "Adam moves each parameter by at most ~lr per optimizer step; the bound "
                    "sums the linearly annealed lr over 1M steps of 64 envs x 64 steps"}


def training(args: PpoArgs, variants: dict[str, dict]) -> dict:
    """Short `train` runs: the default and each variant (PpoArgs fields), same seed and budget."""
    out = {}
    for name, fields in {"default": {}, **variants}.items():
        with tempfile.TemporaryDirectory() as tmp:
            result = train(dataclasses.replace(args, output=tmp, **fields), log=print)
        curve = result["curve"]
        ep = [r for r in curve if "episode/length" in r]
        tail = ep[-max(1, len(ep) // 4):]
        out[name] = {"fields": fields, "iterations": len(curve),
                     "wall_s": curve[-1]["wall_s"],
                     "score_first": curve[0]["score"], "score_last": curve[-1]["score"],
                     "score_last_quarter": float(np.mean([r["score"] for r in curve[
                         -max(1, len(curve) // 4):]])),
                     "action_std_last": curve[-1]["action_std"],
                     "episode_length_first": ep[0]["episode/length"] if ep else None,
                     "episode_length_last_quarter": float(np.mean(
                         [r["episode/length"] for r in tail])) if tail else None,
                     "terminations_last_quarter": {
                         k: float(np.mean([r.get(f"episode/termination/{k}", 0) for r in tail]))
                         for k in TERMINATIONS} if tail else {},
                     "evaluation": result["evaluation"]}
        print(name, json.dumps(out[name]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference")
    parser.add_argument("--parts", default="1,2,3,4")
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--noise", default="0,0.0125,0.025,0.05")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=131072)
    parser.add_argument("--variants", default="{}", help="JSON {name: {PpoArgs field: value}}")
    parser.add_argument("--name", default="ppo_diagnosis_cpu")
    opts = parser.parse_args()
    torch.set_num_threads(2)
    parts = set(opts.parts.split(","))
    path = RESULTS / f"{opts.name}.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = environment_info("cpu")
    args = PpoArgs(reference=opts.reference, num_envs=opts.num_envs, device="cpu",
                   total_timesteps=opts.train_steps)
    results["reference"] = Path(opts.reference).name
    if parts & {"1", "2"}:
        results["terminations"] = [first_episodes(args, float(s), 1000, seed=7)
                                   for s in opts.noise.split(",")]
        path.write_text(json.dumps(results, indent=1))
    if "3" in parts:
        results["gradients"] = gradients(dataclasses.replace(args, num_envs=64),
                                         opts.iterations)
        path.write_text(json.dumps(results, indent=1))
    if "4" in parts:
        results.setdefault("training", {}).update(training(args, json.loads(opts.variants)))
        results["training_budget"] = {"num_envs": args.num_envs,
                                      "total_timesteps": opts.train_steps, "seed": args.seed}
        path.write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
