"""Where the time of ``sparsebench run`` goes, from an empty model cache.

Runs ``sparsebench run --config <config>`` as a child process with a fresh
cache folder (so every model is trained first, as on a new machine), a fresh
store and a fresh output folder, and times the whole command. Then it splits
the wall time into:

* training, per model: ``training_seconds`` from the metadata each trained
  model is cached with;
* attacks, per attack: seconds per sample times samples, summed over models
  and modes, from the run's ``summary.csv`` (the time the runner measured
  around each attack call);
* the rest: loading data and models, verification, the store, the reports and
  the interpreter's start (wall time minus the two above).

Run (``--threads`` sets ``OMP_NUM_THREADS`` for the child)::

    .tox/sparsebench/bin/python benchmarks/default_run_time.py --threads 2

It prints a markdown table and the command's own last lines. Timings depend on
the machine and on what else runs on it: measure on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default", help="packaged config name or TOML file (default: default)")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the run (default: unset)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="model cache to use (default: a new empty folder, so every model is trained)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="sparsebench-time-") as scratch:
        work = Path(scratch)
        cache = args.cache_dir or work / "cache"
        env = dict(os.environ)
        if args.threads is not None:
            env["OMP_NUM_THREADS"] = str(args.threads)
        command = [sys.executable, "-m", "bench.cli", "run", "--config", args.config, "--cache-dir", str(cache),
                   "--store", str(work / "store.sqlite"), "--out", str(work / "out"), "--no-progress"]
        start = time.perf_counter()
        finished = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if finished.returncode != 0:
            print(finished.stdout[-4000:], finished.stderr[-4000:], sep="\n", file=sys.stderr)
            return finished.returncode

        training = {}
        for metadata in sorted(cache.glob("models/*/*.json")):
            record = json.loads(metadata.read_text())
            if "training_seconds" in record:
                training[record.get("model", metadata.stem)] = float(record["training_seconds"])
        (summary_file,) = (work / "out").glob("*/summary.csv")
        summary = pd.read_csv(summary_file)
        attacks = (summary.seconds_per_sample * summary.samples).groupby(summary.attack).sum()
        attacks = attacks.sort_values(ascending=False)

    rest = wall - sum(training.values()) - float(attacks.sum())
    print(f"`sparsebench run --config {args.config}`, {'empty' if args.cache_dir is None else 'given'} model cache, "
          f"OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}: {wall:.1f} s wall\n")
    print("| phase | seconds | share |")
    print("|---|---:|---:|")
    for model, seconds in training.items():
        print(f"| training {model} | {seconds:.1f} | {seconds / wall:.1%} |")
    for attack, seconds in attacks.items():
        print(f"| attack {attack} | {seconds:.1f} | {seconds / wall:.1%} |")
    print(f"| rest (data, models, verification, store, reports, start) | {rest:.1f} | {rest / wall:.1%} |")
    print(f"| **total** | **{wall:.1f}** | 100% |")
    print("\nThe command's last lines:\n")
    print("\n".join(finished.stdout.strip().splitlines()[-3:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
