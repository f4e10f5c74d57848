"""Data-parallel PPO over processes (torch.distributed, Gloo on the CPU)."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from host_reads import no_host_reads

from flyenv.apps.distributed import Ranks
from flyenv.apps.train import Agent, PpoArgs, Rollout, make_optimizer, update
from flyenv.wrappers import NormalizeObservation

T, N, OBS, ACT = 6, 16, 10, 3
ARGS = PpoArgs(num_minibatches=1, update_epochs=3, learning_rate=1e-3)


def _agent():
    torch.manual_seed(0)
    return Agent(OBS, ACT, 16, torch.full((ACT,), 0.1), -1.0)


def _rollout():
    gen = torch.Generator().manual_seed(1)
    agent = _agent()
    obs = torch.randn(T, N, OBS, generator=gen)
    with torch.no_grad():
        dist_ = agent.dist(obs)
        actions = dist_.mean + 0.05 * torch.randn(T, N, ACT, generator=gen)
        data = {"obs": obs, "actions": actions, "logp": dist_.log_prob(actions).sum(-1),
                "values": agent.value(obs), "reward": torch.rand(T, N, generator=gen),
                "raw_reward": torch.rand(T, N, generator=gen),
                "done": (torch.rand(T, N, generator=gen) < 0.1).float()}
    return data, torch.randn(N, OBS, generator=gen)


def _norm(mean, var, count):
    norm = NormalizeObservation.__new__(NormalizeObservation)  # the statistics alone
    norm.mean, norm.var, norm.count, norm.update = mean.clone(), var.clone(), count.clone(), True
    return norm


def _worker(rank, world, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    ranks = Ranks(rank=rank, world_size=world, local_rank=rank)
    share = slice(rank * N // world, (rank + 1) * N // world)
    # The first update: this rank's worlds of the same rollout.
    data, next_obs = _rollout()
    agent = _agent()
    torch.manual_seed(100 + rank)  # parameters must not depend on it: broadcast from rank 0
    for p in agent.parameters():
        p.data += rank * torch.randn_like(p)
    ranks.broadcast(agent)
    optimizer = make_optimizer(agent, ARGS.learning_rate)
    with no_host_reads():  # the communication reads nothing on the host either
        update(agent, optimizer, Rollout(**{k: v[:, share] for k, v in data.items()}),
               next_obs[share], ARGS, ranks)
    # The normalizers: a common start, then each rank's own observations, merged.
    gen = torch.Generator().manual_seed(2)
    start = _norm(torch.randn(OBS, generator=gen, dtype=torch.float64),
                  torch.rand(OBS, generator=gen, dtype=torch.float64) + 0.5,
                  torch.tensor(50.0, dtype=torch.float64))
    batches = 3.0 + 2.0 * torch.randn(2 * world, 8, OBS, generator=gen, dtype=torch.float64)
    norm = _norm(start.mean, start.var, start.count)
    since = norm.state_dict()
    for batch in batches[2 * rank:2 * rank + 2]:
        norm._update(batch)
    with no_host_reads():
        ranks.merge_normalizer(norm, since)
    torch.save({"agent": agent.state_dict(), "norm": norm.state_dict()}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_two_ranks_update_like_one_process_with_both_ranks_worlds(tmp_path):
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path / "out")),
                       nprocs=2, start_method="fork")
    ranks = [torch.load(tmp_path / f"out.{r}") for r in range(2)]
    # One process, all 16 worlds, the same update.
    data, next_obs = _rollout()
    agent = _agent()
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    update(agent, make_optimizer(agent, ARGS.learning_rate), Rollout(**data), next_obs, ARGS)
    for key, value in agent.state_dict().items():
        assert not torch.equal(value, before[key]) or key == "action_scale"
        for state in ranks:
            torch.testing.assert_close(state["agent"][key], value, rtol=1e-5, atol=1e-6)
    # The merged normalizer is the one that saw every rank's observations.
    gen = torch.Generator().manual_seed(2)
    single = _norm(torch.randn(OBS, generator=gen, dtype=torch.float64),
                   torch.rand(OBS, generator=gen, dtype=torch.float64) + 0.5,
                   torch.tensor(50.0, dtype=torch.float64))
    for batch in 3.0 + 2.0 * torch.randn(4, 8, OBS, generator=gen, dtype=torch.float64):
        single._update(batch)
    for state in ranks:
        for key, value in single.state_dict().items():
            torch.testing.assert_close(state["norm"][key], value, rtol=1e-9, atol=1e-9)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_worker(rank, world, port, out):
    from flyenv.apps.train import train

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    train(PpoArgs(device="cpu", num_envs=2, num_steps=4, total_timesteps=32, eval_steps=2,
                  hidden=16, output=out, control_decimation=10))
    dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_torchrun_style_training_writes_one_run_from_rank_zero(tmp_path):
    out = tmp_path / "run"
    mp.start_processes(_train_worker, args=(2, _free_port(), str(out)), nprocs=2,
                       start_method="fork")
    result = json.loads((out / "curve.json").read_text())
    assert result["world_size"] == 2 and [c["name"] for c in result["clips"]] == ["tripod_gait"]
    # 32 steps over all ranks: 2 iterations of 2 ranks x 2 worlds x 4 steps.
    assert [r["env_steps"] for r in result["curve"]] == [16, 32]
    assert 0 < result["curve"][-1]["clip/tripod_gait/score"] <= 1  # over both ranks
    assert sorted(p.name for p in out.iterdir() if p.name != "tb") == [
        "checkpoint.pt", "curve.json", "curve.png"]
