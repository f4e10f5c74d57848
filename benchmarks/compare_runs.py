"""Paired comparison of two evaluations: survival start by start, and joint error.

`train_clips.py` evaluates every run from the same fixed starts with the same pushes, so two
runs' survival can be compared start by start, as `flyenv eval` compares a policy with its
replay (`flyenv.apps.evaluate.paired_survival`, the same pairing): per clip and condition, the
mean of A's survival minus B's with a 95% bootstrap interval, and how many starts only one of
them survived. Either file is a `train_clips.py` result or the `eval.json` of a `flyenv eval`
of the same clips (such as a run evaluated again from more starts). Runs evaluated on other
pushes or other numbers of starts are refused, since their starts do not pair.

    python benchmarks/compare_runs.py results/A.json results/B.json [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from flyenv.apps.evaluate import paired_survival


def _load(path: Path) -> dict:
    """A `train_clips.py` result, or a `flyenv eval` eval.json read as one."""
    result = json.loads(path.read_text())
    if "eval" not in result and "clips" in result:  # eval.json: its per-clip part is "clips"
        result = {**result, "eval": result["clips"]}
    if "eval" not in result or "perturbation" not in result:
        raise SystemExit(f"{path}: no 'eval' (or 'clips') and 'perturbation': neither a "
                         "train_clips.py result nor a flyenv eval eval.json")
    return result


def compare(a: dict, b: dict, seed: int = 0) -> dict[str, dict[str, dict]]:
    """{clip: {condition: {survived_gain, survived_gain_ci95, a_only, b_only, joint_error_deg}}}
    for the clips both runs evaluated, A minus B."""
    if a["perturbation"] != b["perturbation"]:
        raise SystemExit(f"the runs were evaluated on other pushes: {a['perturbation']} "
                         f"against {b['perturbation']}")
    out: dict[str, dict[str, dict]] = {}
    for clip in a["eval"].keys() & b["eval"].keys():
        out[clip] = {}
        for condition in ("clean", "perturbed"):
            pa, pb = (np.asarray(r["eval"][clip][condition]["policy"]["survived_per_start"])
                      for r in (a, b))
            if pa.shape != pb.shape:
                raise SystemExit(f"{clip}: {pa.size} starts against {pb.size}: they do not pair")
            out[clip][condition] = paired_survival(pa, pb, seed) | {
                "joint_error_deg": [r["eval"][clip][condition]["policy"]["joint_error_deg"]
                                    for r in (a, b)]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--json", type=Path, help="also write the comparison here")
    args = parser.parse_args()
    table = compare(_load(args.a), _load(args.b))
    print(f"A = {args.a.name}\nB = {args.b.name}")
    for clip, conditions in sorted(table.items()):
        for condition, row in conditions.items():
            low, high = row["survived_gain_ci95"]
            ea, eb = row["joint_error_deg"]
            print(f"{clip:28s} {condition:9s} survived A-B {row['survived_gain']:+.3f} "
                  f"[{low:+.3f}, {high:+.3f}]  only A {row['a_only']:2d}, only B "
                  f"{row['b_only']:2d}  joint error {ea:.2f} / {eb:.2f} deg")
    if args.json:
        args.json.write_text(json.dumps({"a": args.a.name, "b": args.b.name,
                                         "clips": table}, indent=1))


if __name__ == "__main__":
    main()
