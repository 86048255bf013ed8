#!/usr/bin/env python3
"""Embedded mode against the npm package aws-local-stepfunctions on the same definition.

Both run the Map benchmark of loadtest/python-baseline/map_pass_def.py (a Map over N items
whose processor is two Pass states, MaxConcurrency 0) as whole processes, one after the other
in alternating rounds, each pinned to the same core when --cpu is given:

  mapfleet run def.json --input in.json --max-payload-bytes 4194304   (the Map's result is
      over AWS's 256 KiB for 10,000 items, so the limit is raised)
  node run.cjs def.json in.json       (aws-local-stepfunctions' StateMachine.run, its output
      printed as JSON: the package's own `local-sfn` CLI prints results with util.inspect,
      which elides arrays past 100 items, so its output could not be checked)

Every run's output is checked (N results, in order, each item's own key) before it counts.
A one-item run of each side is timed too, so the table can split the fixed start-up cost
from the cost per item. Figures are medians over the rounds; the ratio is local-sfn's wall
time over mapfleet's, measured in the same run.

usage: compare.py --mapfleet target/release/mapfleet --local-sfn-dir DIR (setup.sh prints it) [--items 10000]
                  [--rounds 5] [--cpu 1] [--json FILE]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MAP_PASS_DEF = os.path.join(HERE, "..", "python-baseline", "map_pass_def.py")
PAYLOAD_LIMIT = "4194304"


def make_case(items, root):
    out = os.path.join(root, f"map-{items}")
    subprocess.run([sys.executable, MAP_PASS_DEF, str(items), out], check=True)
    return os.path.join(out, "def.json"), os.path.join(out, "in.json")


def timed(cmd, cpu=None):
    """Runs cmd to the end; returns (stdout, wall s, CPU s of the process and its children)."""
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return p.stdout, wall, cpu_s


def check(stdout, items, who):
    doc = json.loads(stdout)
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, list) or len(results) != items:
        got = len(results) if isinstance(results, list) else type(results).__name__
        raise SystemExit(f"{who}: expected {items} results, got {got}")
    for i, r in enumerate(results):
        if r.get("k") != f"item-{i}" or r.get("i") != i or r.get("done") is not True:
            raise SystemExit(f"{who}: result {i} is {json.dumps(r)[:200]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mapfleet", required=True)
    ap.add_argument("--local-sfn-dir", required=True, help="where setup.sh installed the package")
    ap.add_argument("--items", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=None, help="pin both sides to this core")
    ap.add_argument("--json", default=None, help="write the figures here")
    a = ap.parse_args()

    sides = {
        "mapfleet": lambda d, i: [a.mapfleet, "run", d, "--input", i, "--max-payload-bytes", PAYLOAD_LIMIT],
        "local-sfn": lambda d, i: ["node", os.path.join(a.local_sfn_dir, "run.cjs"), d, i],
    }
    with tempfile.TemporaryDirectory() as root:
        cases = {n: make_case(n, root) for n in (1, a.items)}
        runs = {(s, n): [] for s in sides for n in cases}
        for r in range(a.rounds):
            for side, cmd_of in sides.items():
                for n, (d, i) in cases.items():
                    out, wall, cpu_s = timed(cmd_of(d, i), a.cpu)
                    check(out, n, side)
                    runs[(side, n)].append((wall, cpu_s))
            print(f"round {r + 1}/{a.rounds}: " + ", ".join(
                f"{s} {runs[(s, a.items)][-1][0]:.3f} s" for s in sides), file=sys.stderr, flush=True)

    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in runs.items()}
    figures = {}
    print(f"\nMap of two Pass states over {a.items} items, whole process, {a.rounds} rounds, medians"
          + (f", pinned to CPU {a.cpu}" if a.cpu is not None else ""))
    print(f"{'':12} {'wall s':>8} {'CPU s':>8} {'1 item s':>9} {'µs/item':>9}")
    for side in sides:
        wall, cpu_s = med[(side, a.items)]
        fixed = med[(side, 1)][0]
        per_item = max(wall - fixed, 0.0) / max(a.items - 1, 1) * 1e6
        figures[side] = {"wall_s": wall, "cpu_s": cpu_s, "one_item_s": fixed, "us_per_item": per_item}
        print(f"{side:12} {wall:8.3f} {cpu_s:8.3f} {fixed:9.3f} {per_item:9.1f}")
    ratio = figures["local-sfn"]["wall_s"] / figures["mapfleet"]["wall_s"]
    ratio_cpu = figures["local-sfn"]["cpu_s"] / figures["mapfleet"]["cpu_s"]
    figures["ratio_wall"], figures["ratio_cpu"], figures["items"] = ratio, ratio_cpu, a.items
    print(f"mapfleet is {ratio:.1f}x faster by wall time ({ratio_cpu:.1f}x by CPU time); the aim is 50x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
