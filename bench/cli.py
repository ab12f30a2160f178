"""``sparsebench``: run benchmarks, list attacks, write reports.

The command line, at the top of the import stack (``attacks <- baselines <- bench <- reports <- bench/cli.py``;
``tests/test_layout.py``): the only module that knows :mod:`argparse`. Every subcommand's options and its
``cmd_*`` function are here; what they compute lives in ``bench/`` and ``reports/``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import re
import shlex
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import torch

from bench.config import default_config_path, load_config, packaged_configs, resolve_config
from bench.data import DATASETS, get_batch, load_dataset
from bench.distributed import run_distributed
from bench.efficiency import OPERATION_FIGURES, measure_efficiency
from bench.errors import SparseBenchError
from bench.models import all_models, load_model, model_metadata, plugin_models, untrained_model
from bench.paths import DEFAULT_OUT, inside
from bench.provenance import git_commit, hardware, versions
from bench.registry import ATTACKS, all_attacks, get_attack, get_entry, plugin_attacks
from bench.runner import choose_targets, resolve_device, run_benchmark, select_samples
from bench.speed import largest_batch, speed_up
from bench.store import DEFAULT_STORE, ResultsStore, open_run
from reports.escaping import markdown_code_block, markdown_escape, markdown_table, option, shell_command
from reports.gate import (
    COMPARE_TIME,
    DEFAULT_TOLERANCES,
    baseline_from_run,
    check,
    failures,
    findings_table,
    write_baseline,
)
from reports.interpret import (
    CATEGORIES,
    DEFAULT_QUANTILE,
    FILES,
    INSTALL,
    interpretation,
    noise_summary,
    require_grad_cam,
    unit_folder,
)
from reports.leaderboard import UNITS, parse_budgets, write_leaderboard
from reports.paper import PAPER_TABLES, compare_with_paper, rank_agreement
from reports.parity import FOOLED_SLACK, L0_RATIO_MAX, parity_of_run
from reports.plots import example_grid, robust_accuracy_curves, sweep_curves, time_versus_l0
from reports.stats import compare_attacks
from reports.tables import (
    PROPOSED,
    compact_summary,
    format_table,
    order_like_config,
    proposed_versus_best,
    summarize,
    write_tables,
)
from reports.transfer import transfer_matrix, transfer_rates

__all__ = ["build_parser", "main"]


def _target_rule(config: dict) -> str:
    """The caption's words for how targets were chosen (bench.runner.choose_targets); empty for an untargeted run."""
    if "targeted" not in config.get("modes", ()):
        return ""
    rule = config.get("target_selection", "random")
    words = {"least-likely": "the least-likely class (lowest clean logit), as Lin et al. Section 5.1",
             "random": "a random class other than the true one, seeded per sample"}.get(rule, rule)
    return f"; targeted: the target is {words}"


def _report(store, run_id: str, out: Path, *, quiet: bool = False) -> dict[str, Path]:
    """Tables (Markdown, LaTeX, CSV), figures (PNG) and ``report.md`` of a stored run, from the store alone."""
    directory = inside(out, run_id)  # a run id from a store may hold '..' or be absolute: refused before any work
    run = store.get_run(run_id)
    if run is None:
        raise SparseBenchError(f"--run: {run_id!r} is not in {store.path}; runs: {', '.join(store.runs()['run_id']) or 'none'}")
    config = run["config"]
    samples = store.run_samples(run_id)
    summary = summarize(samples, budgets=config["budgets"], budget_unit=config["budget_unit"])
    summary = order_like_config(summary, config)
    caption = (f"SparseBench run {run_id} (seed {run['seed']}, {run['hardware']['device']}, "
               f"commit {run['git_commit']}); L0 over successful samples; fr@k: budget in {config['budget_unit']}"
               f"{_target_rule(config)}")
    paths = write_tables(summary, directory, caption=caption)
    proposed = config.get("proposed", PROPOSED)
    comparison = proposed_versus_best(order_like_config(samples, config), proposed)
    comparison_caption = (f"The proposed attack ({proposed}) against the best other attack of run {run_id} (ranked by "
                          "fooling rate, then median L0 in pixels), sample by sample on the samples both ran on: "
                          "lower L0 wins, a success beats a failure; verdict by a two-sided sign test at 0.05; "
                          "median_ratio: its L0 over the other's on samples both fooled; [lo, hi]: 95% intervals")
    if not comparison.empty:
        paths.update({f"comparison.{k}": v for k, v in write_tables(
            comparison, directory, stem="comparison", caption=comparison_caption).items()})
    figures = {
        "robust accuracy against the L0 budget": robust_accuracy_curves(
            samples, directory / "plots" / "robust-accuracy.png", unit=config["budget_unit"], order=summary),
        "seconds per sample against median L0": time_versus_l0(
            summary, directory / "plots" / "time-versus-l0.png", unit=config["budget_unit"]),
    }
    grid = example_grid(store, run_id, directory / "plots" / "examples.png")
    if grid is not None:
        figures["clean, adversarial and perturbation (the paper's Figures 1 and 3)"] = grid
    for path in sweep_curves(summary, store.units(run_id), directory / "plots", unit=config["budget_unit"]):
        figures[f"sweep {path.stem.removeprefix('sweep-')}"] = path
    paths.update({f"plot {title}": path for title, path in figures.items()})
    command = shell_command(["sparsebench", "report", *option("--run", run_id), *option("--store", store.path),
                             *option("--out", out)])
    commits = samples["git_commit"].fillna("unrecorded").value_counts(sort=False).to_dict()
    paths["report"] = _write_report_markdown(directory / "report.md", run, caption, format_table(summary),
                                             format_table(comparison) if not comparison.empty else None,
                                             comparison_caption, figures, command, commits)
    if not quiet:
        for (dataset, model), table in compact_summary(summary, unit=config["budget_unit"]).items():
            print(f"\n{dataset} / {model}")
            print(table.to_markdown(index=False))
        print(f"\nfull table (every column and budget): {paths['md']}")
        if not comparison.empty:
            print("\nThe proposed attack against the best other attack, sample by sample (sign test):")
            print(format_table(comparison).to_markdown(index=False))
        print(f"\nreport: {paths['report']}; tables and plots beside it")
    return paths


def _write_report_markdown(path: Path, run: dict, caption: str, summary, comparison, comparison_caption: str,
                           figures: dict[str, Path], command: str, commits: dict[str, int] | None = None) -> Path:
    """One Markdown page: provenance, the comparison, the figures, the full table.

    ``commits`` counts the rows each commit made; more than one (a run resumed with ``--force-resume``) is said.

    Everything from the store is escaped (:func:`reports.escaping.markdown_escape`); ``command``, shell-quoted,
    is shown verbatim in a code block."""
    lines = [f"# {markdown_escape(run['name'])} ({markdown_escape(run['run_id'])})", "",
             "Regenerate (from the store; no attack reruns):", "", markdown_code_block(command), "",
             f"- created {markdown_escape(run['created'])}, finished {markdown_escape(run.get('finished') or 'not yet')}; "
             f"seed {markdown_escape(run['seed'])}",
             f"- commit {markdown_escape(run['git_commit'])}", f"- hardware: {markdown_escape(run['hardware'])}",
             f"- versions: {markdown_escape(run['versions'])}", ""]
    if commits and len(commits) > 1:
        made = ", ".join(f"{markdown_escape(commit)} ({count} rows)" for commit, count in commits.items())
        lines[-1:-1] = [f"- **rows made by more than one commit** (resumed with --force-resume): {made}"]
    if comparison is not None:
        lines += ["## The proposed attack beside the best other attack", "", markdown_escape(comparison_caption), "",
                  markdown_table(comparison), ""]
    lines += ["## Figures", ""]
    for title, figure in figures.items():
        lines += [f"### {markdown_escape(title)}", "",
                  f"![{markdown_escape(title)}]({quote(figure.relative_to(path.parent).as_posix())})", ""]
    lines += ["## All results", "", markdown_escape(caption), "", markdown_table(summary), ""]
    path.write_text("\n".join(lines))
    return path


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(resolve_config(args.config) if args.config else default_config_path())
    run_id = f"{config.name}-{config.fingerprint()}"
    if args.new_run:  # the time to read it, a random part so that two started in the same second differ
        run_id += time.strftime("-%Y%m%dT%H%M%S") + f"-{uuid.uuid4().hex[:8]}"
    with ResultsStore(args.store) as store:
        resumed = store.get_run(run_id) is not None
        print(f"{'resuming' if resumed else 'starting'} run {run_id} -> {args.store}", file=sys.stderr)
        started = time.perf_counter()
        try:
            if args.ray is None:
                run_benchmark(config, store, run_id=run_id, cache_dir=args.cache_dir, progress=not args.no_progress,
                              force_resume=args.force_resume)
            else:
                run_distributed(config, store, run_id=run_id, cache_dir=args.cache_dir,
                                address=None if args.ray == "local" else args.ray,
                                batches_per_shard=args.shard_batches, retries=args.retries,
                                gpus_per_task=args.gpus_per_task, progress=not args.no_progress,
                                force_resume=args.force_resume)
        except KeyboardInterrupt:
            print(f"\ninterrupted: whole batches are stored; run the same command to resume run {run_id}",
                  file=sys.stderr)
            return 130
        print(f"run {run_id} finished in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        _report(store, run_id, args.out)
    return 0


def _short_citation(citation: str) -> str:
    """``"Modas, ... arXiv:1811.02248; via ..."`` -> ``"Modas et al., arXiv:1811.02248"``."""
    author = re.split(r"[ ,]", citation, maxsplit=1)[0]
    own = citation.split(";")[0]  # the attack's own paper, not what it builds on or wraps
    arxiv = re.search(r"arXiv:\d{4}\.\d{4,5}", own)
    if arxiv:
        return f"{author} et al., {arxiv.group(0)}"
    venue = re.search(r"(?:CVPR|ICCV|ECCV|NeurIPS|ICML|ICLR|AAAI) \d{4}", own)
    return f"{author} et al., {venue.group(0)}" if venue else citation.split(",")[0]


def _config_summary(path: Path) -> str:
    """A packaged config's first comment line: what it measures."""
    first = next((line for line in path.read_text().splitlines() if line.strip()), "")
    return first.lstrip("#").strip() if first.startswith("#") else ""


def cmd_list(args: argparse.Namespace) -> int:
    if args.configs:
        for name, path in sorted(packaged_configs().items()):
            print(f"{name:24} {_config_summary(path)}")
        return 0
    packages = {name: package for name, (_, package) in plugin_attacks().items()}
    rows = [
        {"name": e.name, "kind": e.kind, "norm": e.norm, "source": e.source, "modes": ", ".join(e.modes),
         "threat": e.threat, "package": packages.get(e.name, "sparsebench"),
         "citation": e.citation if args.verbose else _short_citation(e.citation)}
        for e in all_attacks().values()
    ]
    print(pd.DataFrame(rows).to_markdown(index=False))
    print("\nprune/<name>: any attack above, then a pruning pass (attacks/prune.py; options prune_rounds, ...)")
    if args.verbose:
        for entry in all_attacks().values():
            print(f"\n{entry.name} defaults:")
            for family in (None, "mnist", "cifar10", "imagenet"):
                print(f"  {family or 'any'}: {entry.hyperparameters(family)}")
            ranges = ", ".join(f"{key} in {interval}" for key, interval in entry.valid_ranges().items())
            print(f"  valid: {ranges or 'no numeric hyperparameter'}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    packages = {name: package for name, (_, package) in plugin_models().items()}
    rows = []
    for entry in all_models().values():
        for dataset in entry.datasets:
            row = {"name": entry.name, "dataset": dataset, "source": entry.source,
                   "package": packages.get(entry.name, "sparsebench"), "description": entry.description}
            if entry.source == "sparsebench":
                meta = model_metadata(entry.name, dataset, cache_dir=args.cache_dir) or {}
                row["cached"] = "yes" if meta else "no (trained on first use)"
                row["clean_accuracy"] = meta.get("clean_accuracy", "")
                row["pgd_accuracy"] = meta.get("pgd_accuracy", "")
            rows.append(row)
    print(pd.DataFrame(rows).fillna("").to_markdown(index=False))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    store, run_id = open_run(args.store, args.run)
    with store:
        _report(store, run_id, args.out)
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    store, run_id = open_run(args.store, args.run)
    with store:
        table, unpaired = parity_of_run(store, run_id)
        run = store.get_run(run_id)
        assert run is not None  # open_run checked it
        unit = run["config"].get("budget_unit", "pixels")
    caption = (f"Parity of run {run_id}: each native baseline beside its reference implementation, per model and "
               f"mode, on the samples both attacked; median L0 ({unit}) over each one's successful samples, "
               f"l0_ratio = native / reference; wins/ties/losses: the native attack's, sample by sample (a failure "
               f"is L0 = inf); goal: fooling rate lower by at most {FOOLED_SLACK} sample and median L0 at most "
               f"{L0_RATIO_MAX:g}x. Not compared (no partner in the run): {', '.join(unpaired) or 'none'}")
    shown = table.drop(columns=["paired_median_ratio_lo", "paired_median_ratio_hi", "fooling_ok", "l0_ok"])
    written = write_tables(shown, inside(args.out, run_id), stem="parity", caption=caption)
    print(caption + "\n")
    print(markdown_table(shown, floatfmt=".3g"))
    failed = table[table["verdict"] != "pass"]
    print(f"\n{len(table) - len(failed)} of {len(table)} pass; tables: {', '.join(str(p) for p in written.values())}")
    return 1 if args.check and not failed.empty else 0


def cmd_compare(args: argparse.Namespace) -> int:
    store, run_id = open_run(args.store, args.run)
    with store:
        run = store.get_run(run_id)
        assert run is not None  # open_run checked it
        config = run["config"]
        samples = order_like_config(store.run_samples(run_id), config)
    unit = args.unit or config.get("budget_unit", "pixels")
    attacks = list(dict.fromkeys(samples["attack"]))
    for label in (args.a, args.b):
        if label not in attacks:
            raise SparseBenchError(f"compare: attack {label!r} is not in run {run_id}; its attacks: {', '.join(attacks)}")
    table = compare_attacks(samples, args.a, args.b, unit=unit)
    if table.empty:
        raise SparseBenchError(f"compare: {args.a} and {args.b} never ran on the same dataset, model and mode in run "
                               f"{run_id}")
    print(f"{args.a} (A) against {args.b} (B) in run {run_id}, per dataset/model/mode on the samples both ran on; "
          f"L0 in {unit}; lower L0 wins, a success beats a failure, two failures tie; sign_test_p: two-sided sign "
          "test on the non-tied samples; median_ratio: L0 of A over L0 of B on samples both fooled; [lo, hi]: "
          "95% intervals (Wilson for fooling rates, bootstrap for the ratio)\n")
    shown = format_table(table.drop(columns=["a", "b"])).rename(columns={
        "samples": "paired samples", "a_fooling_rate": f"{args.a} (A) fooling_rate",
        "b_fooling_rate": f"{args.b} (B) fooling_rate"})
    print(shown.to_markdown(index=False))
    return 0



def cmd_transfer(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    store, run_id = open_run(args.store, args.run)
    with store:
        rates = transfer_rates(
            store, run_id, lambda name, dataset: load_model(name, dataset, cache_dir=args.cache_dir, device=device),
            targets=args.targets, device=device)
    matrix = transfer_matrix(rates)
    caption = (f"Transferability of run {run_id}: fooling rate (%) on each evaluated model (columns) of the "
               "examples made on the source model; * = white-box; over the attacked samples each evaluated "
               "model classifies correctly when clean")
    directory = inside(args.out, run_id)
    paths = write_tables(matrix, directory, stem="transfer", caption=caption)
    rates.to_csv(directory / "transfer-rates.csv", index=False)
    print(caption + "\n")
    print(matrix.to_markdown(index=False))
    print(f"\ntables: {', '.join(str(p) for p in paths.values())}, {directory / 'transfer-rates.csv'}")
    return 0


REPRODUCIBLE = ("table1", "table2", "table3", "table4", "fig7")


def _reproduce_config(table: str, online: bool) -> str:
    if table == "fig7":
        if online:
            raise SparseBenchError("reproduce fig7: the sweeps of Figure 7 run on the offline models only "
                                   "(config lin2025-fig7); leave out --online")
        return "lin2025-fig7"
    return f"paper-{table}" if online else f"paper-{table}-offline"


def cmd_reproduce(args: argparse.Namespace) -> int:
    where = "online" if args.online else "offline"
    config = load_config(resolve_config(_reproduce_config(args.table, args.online)))
    run_id = f"{config.name}-{config.fingerprint()}"
    with ResultsStore(args.store) as store:
        print(f"{'resuming' if store.get_run(run_id) else 'starting'} run {run_id} ({config.name}) -> {args.store}",
              file=sys.stderr)
        run_benchmark(config, store, run_id=run_id, cache_dir=args.cache_dir, progress=not args.no_progress)
        paths = _report(store, run_id, args.out, quiet=True)
        if args.table == "fig7":
            print("Figure 7 (the paper's sweeps of a, lambda and tau; its best: a 0.1, lambda 1e3, tau 0.30): "
                  f"{paths['report']}")
            return 0
        table = PAPER_TABLES[args.table]
        if args.table == "table3":
            device = resolve_device(config.device)
            targets = list(dict.fromkeys(c.model for c in table.columns[where]))
            ours = transfer_rates(
                store, run_id,
                lambda name, dataset: load_model(name, dataset, cache_dir=args.cache_dir, device=device),
                targets=targets, device=device).rename(columns={"target": "model"})
        else:
            ours = summarize(store.samples(run_id))
    comparison = compare_with_paper(table, ours, where=where)
    agreement = rank_agreement(table, comparison)
    setting = ("Our run is on the paper's own setting, so 'difference (ours - paper)' is ours minus the paper's "
               "value" if args.online else
               "OFFLINE COUNTERPART: our run is a different experiment (Fashion-MNIST models trained by this package) "
               "from the paper's (CIFAR-10 / ImageNet), so the two values are not compared with each other")
    caption = (f"{args.table}: {table.title} ({table.metric}, {table.better}). 'paper' columns are the numbers Lin et "
               f"al. report (arXiv:2506.17250, Section 5); 'our' columns were measured by run {run_id} (`sparsebench "
               f"reproduce {args.table}{' --online' if args.online else ''}`){_target_rule(config.to_dict())}. "
               f"{setting}. Compared within each experiment: each method's value as a ratio to {table.reference}'s in "
               "the same column (the paper's ratio from the paper's numbers, ours from ours); each method's rank in "
               "its column (1 = best); and, for each method, the paper's order of the proposed attack and that "
               "method, and whether our run has the same order (holds, fails, or not run when our run lacks either "
               "value).")
    agreement_caption = (f"{args.table}: per column, Spearman's rho and Kendall's tau between the paper's order of "
                         f"the methods ({table.metric}, {table.better}) and our run's ({run_id}), over the n methods "
                         "with a value on both sides, two-sided p; and how many of the paper's claims that the "
                         "proposed attack is better (or worse) than another method hold in our run.")
    directory = inside(args.out, run_id)
    written = write_tables(comparison, directory, stem=f"reproduce-{args.table}", caption=caption)
    written.update({f"agreement {k}": v for k, v in write_tables(
        agreement, directory, stem=f"reproduce-{args.table}-agreement", caption=agreement_caption).items()})
    print(caption + "\n")
    print(format_table(comparison).to_markdown(index=False, floatfmt=".4g"))
    print("\n" + agreement_caption + "\n")
    print(format_table(agreement).to_markdown(index=False, floatfmt=".3g"))
    print(f"\ntables: {', '.join(str(p) for p in written.values())}; full report: {paths['report']}")
    return 0


def _bench_inputs(args: argparse.Namespace, device):
    """The model and one batch to time on: real correctly classified test images, or with
    ``--synthetic`` an untrained model of the architecture and uniform random inputs whose
    labels are its own predictions (so each is "correctly classified" and success means something)."""
    info = DATASETS[args.dataset]
    limit = args.samples if args.batch_size == "auto" else int(args.batch_size)
    if args.synthetic:
        model = untrained_model(args.model, args.dataset, seed=args.seed, device=device)
        generator = torch.Generator().manual_seed(args.seed)
        inputs = torch.rand((limit, *info.shape), generator=generator).to(device)
        with torch.no_grad():
            labels = model(inputs).argmax(1)
        offsets = torch.randint(1, info.num_classes, (limit,), generator=generator).to(device)
        return model, inputs, labels, (labels + offsets) % info.num_classes
    model = load_model(args.model, args.dataset, cache_dir=args.cache_dir, device=device)
    dataset = load_dataset(args.dataset)
    selection = select_samples(model, dataset, n_samples=limit, seed=args.seed, device=device)
    inputs, labels = get_batch(dataset, selection.indices)
    targets = choose_targets(selection, how="random", seed=args.seed, num_classes=info.num_classes)
    return model, inputs.to(device), labels.to(device), targets.to(device)


def _bench_attacks(args: argparse.Namespace) -> list[tuple[str, str, dict]]:
    """``(label, registry name, overrides)`` of each attack to time: the names given (``native``
    standing for every native entry), with overrides from ``--overrides-from``'s config."""
    overrides: dict[str, dict] = {}
    if args.overrides_from:
        for attack in load_config(resolve_config(args.overrides_from)).attacks:
            overrides.setdefault(attack.name, dict(attack.overrides))
    names: list[str] = []
    for name in args.attacks:
        expanded = [e.name for e in ATTACKS.values() if e.source == "native"] if name == "native" else [name]
        names += [n for n in expanded if n not in names]
    for name in names:
        get_entry(name)  # fail before any work on an unknown name
    return [(name, name, overrides.get(name, {})) for name in names]


def _batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a positive integer nor 'auto'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def cmd_bench(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    attacks = _bench_attacks(args)
    model, all_inputs, all_labels, all_targets = _bench_inputs(args, device)
    attacked = speed_up(model, precision=args.precision, channels_last=args.channels_last, device=device)
    inputs_kind = ("untrained weights, uniform random inputs labelled by the model" if args.synthetic
                   else "correctly classified test images")
    caption = (f"model {args.model} ({args.dataset}), {inputs_kind}, precision {args.precision}"
               f"{', channels-last' if args.channels_last else ''}; {hardware(device)}")
    rows: list[dict] = []

    def write(table: pd.DataFrame) -> None:  # after every row: a run cut short keeps what it measured
        if args.out is None:
            return
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "bench.csv", index=False)
        shown = markdown_table(table.drop(columns=["overrides"]), floatfmt=".4g")
        (args.out / "bench.md").write_text(f"{markdown_escape(caption)}\n\n{shown}\n")
        (args.out / "bench.json").write_text(json.dumps({
            "command": args.command_line, "hardware": hardware(device), "versions": versions(),
            "git_commit": git_commit(), "rows": rows}, indent=2, default=str) + "\n")

    for label, name, overrides in attacks:
        attack = get_attack(name, dataset=args.dataset, **overrides)
        entry = attack.entry
        for mode in (m for m in args.modes if m in entry.modes):
            targets = all_targets if mode == "targeted" else None
            base = {"attack": label, "mode": mode, "overrides": json.dumps(overrides, sort_keys=True)}
            try:
                attack.prepare(copy.deepcopy(model), targeted=mode == "targeted", cache_dir=args.cache_dir,
                               progress=False)
                size, chosen_by = len(all_labels), "--batch-size"
                if args.batch_size == "auto":
                    torch.manual_seed(args.seed)
                    estimate = largest_batch(attack, copy.deepcopy(attacked), all_inputs, all_labels, targets=targets,
                                             limit=len(all_labels))
                    size, chosen_by = estimate.batch_size, f"auto: {estimate.reason}"
                torch.manual_seed(args.seed)
                result = measure_efficiency(attack, attacked, all_inputs[:size], all_labels[:size],
                                            rounds=args.rounds, clock=args.clock, operations=args.count_ops,
                                            targets=targets[:size] if targets is not None else None)
            except Exception as error:  # one attack's failure is a row that says why, not the end of the table
                rows.append({**base, "error": f"{type(error).__name__}: {error}"})
                print(f"{label} {mode}: {rows[-1]['error']}", file=sys.stderr)
            else:
                left_out = ("attack", "mode") + (() if args.count_ops else OPERATION_FIGURES)
                rows.append({**base, **{k: v for k, v in result.as_dict().items() if k not in left_out},
                             "batch_chosen_by": chosen_by})
                print(f"{label} {mode}: ratio {result.ratio:.3f}", file=sys.stderr)
            write(pd.DataFrame(rows))
    table = pd.DataFrame(rows)
    print(caption)
    print(table.drop(columns=["overrides"]).to_markdown(index=False, floatfmt=".4g"))
    if "error" in table:
        print(f"failed: {', '.join(table[table['error'].notna()]['attack'])}", file=sys.stderr)
    if args.max_ratio is not None and "ratio" in table:
        over = table[table["ratio"] > args.max_ratio]
        if not over.empty:
            print(f"ratio above {args.max_ratio}: {', '.join(over['attack'] + '/' + over['mode'])}", file=sys.stderr)
            return 1
    return 1 if "error" in table else 0


def cmd_runs(args: argparse.Namespace) -> int:
    with ResultsStore(args.store, readonly=True) as store:
        print(store.runs().to_markdown(index=False))
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    if not Path(args.store).exists():
        raise SparseBenchError(f"--store: {args.store} does not exist; run `sparsebench run` first")
    tolerances = {}
    for flag, name in (("fooling_rate", "fooling_rate_drop_points"), ("l0", "median_l0_rise_fraction"),
                       ("time", "seconds_rise_fraction")):
        value = getattr(args, f"tolerance_{flag}")
        if value is not None:
            if not value >= 0:
                raise SparseBenchError(f"--tolerance-{flag.replace('_', '-')}: {value!r} must be a number >= 0")
            tolerances[name] = value
    with ResultsStore(args.store, readonly=True) as store:
        run_id = args.run or store.latest_run_id()
        if run_id is None:
            raise SparseBenchError(f"--store: {args.store} holds no run")
        document = baseline_from_run(store, run_id, tolerances=tolerances)
    path = write_baseline(document, args.out)
    print(f"baseline of run {run_id} ({len(document['units'])} units) -> {path}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    if args.cache_dir is not None and not args.rerun:
        raise SparseBenchError("--cache-dir: only --rerun loads models; leave it out when checking a stored run")
    run_id, findings = check(args.baseline, store=args.store, run_id=args.run, rerun=args.rerun,
                             cache_dir=args.cache_dir, compare_time=args.compare_time,
                             progress=args.rerun and not args.no_progress)
    print(f"run {run_id} against {args.baseline}")
    print(findings_table(findings))
    failed = failures(findings)
    for finding in failed:
        print(finding.message, file=sys.stderr)
    improved = [f for f in findings if f.verdict == "improved"]
    if failed:
        print(f"sparsebench check: {len(failed)} regression(s) against {args.baseline}", file=sys.stderr)
        return 1
    print(f"sparsebench check: no regression against {args.baseline}"
          + (f"; {len(improved)} improvement(s): `sparsebench baseline --store {args.store} --run {run_id} "
             f"--out {args.baseline}` refreshes it" if improved else ""),
          file=sys.stderr)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    if not Path(args.store).exists():
        raise SparseBenchError(f"--store: {args.store} does not exist; run `sparsebench run` first")
    budgets = parse_budgets(args.budgets) if args.budgets is not None else None
    with ResultsStore(args.store, readonly=True) as store:
        run_ids = args.run or [store.latest_run_id()]
        if run_ids == [None]:
            raise SparseBenchError(f"--store: {args.store} holds no run")
        paths = write_leaderboard(store, run_ids, args.out, budgets=budgets, unit=args.unit)
    print(f"leaderboard: {paths['markdown']} and {paths['html']} (self-contained; open it in a browser)")
    return 0


def cmd_interpret(args: argparse.Namespace) -> int:
    require_grad_cam()
    device = resolve_device(args.device)
    loader = functools.cache(lambda name, dataset: load_model(name, dataset, cache_dir=args.cache_dir, device=device))
    store, run_id = open_run(args.store, args.run)
    tables = []
    with store:
        for attack in args.attack:
            directory = unit_folder(args.out, run_id, model=args.model, attack=attack, mode=args.mode)
            tables.append(interpretation(
                store, run_id, loader, attack=attack, model=args.model, mode=args.mode, n_samples=args.samples,
                quantile=args.quantile, dataset=args.dataset, target_layer=args.target_layer,
                figure_samples=args.figure_samples, out=directory))
            print(f"{attack}: {directory / FILES['report']}, {FILES['figure']} and {FILES['samples']} beside it")
    summary = noise_summary(pd.concat(tables, ignore_index=True))
    print(f"\nFractions of perturbed pixels (top {args.quantile:g} of each Grad-CAM map = a class's evidence):")
    columns = ["attack", "samples", "median_l0_pixels", *(f"{name}_mean" for name in CATEGORIES), "in_true_region",
               "true_region", "in_adversarial_region", "adversarial_region", "adversarial_on_clean"]
    print(summary[columns].to_markdown(index=False, floatfmt=".3f"))
    return 0


def _tolerance_percent(name: str) -> str:
    """A default tolerance and its percentage, for help text (``%%``: argparse formats help with ``%``)."""
    return f"{DEFAULT_TOLERANCES[name]}, i.e. {100 * DEFAULT_TOLERANCES[name]:.0f}%%"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsebench",
        description="Benchmark sparse (L0) adversarial attacks. Every adversarial example is re-checked by the "
                    "harness (box, shape, success by its own forward pass) and stored with its run's config, "
                    "seed, versions and hardware.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def store_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", type=Path, default=DEFAULT_STORE,
                       help=f"SQLite results store (default: {DEFAULT_STORE})")
        p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                       help=f"folder for tables, one subfolder per run (default: {DEFAULT_OUT})")

    run = sub.add_parser("run", help="run (or resume) a benchmark and print its table",
                         description="Run the benchmark a TOML config describes; with no --config, the offline "
                                     "Fashion-MNIST benchmark. Running the same config again resumes it: whole "
                                     "batches already stored are kept, nothing is counted twice.")
    run.add_argument("--config", help="TOML config file, or the name of a packaged config (sparsebench list "
                                       f"--configs: {', '.join(sorted(packaged_configs()))}; default: the offline "
                                       "Fashion-MNIST benchmark)")
    store_options(run)
    run.add_argument("--cache-dir", type=Path, default=None,
                     help="model and data cache (default: $SPARSEBENCH_CACHE or ~/.cache/sparsebench)")
    run.add_argument("--new-run", action="store_true", help="start a new run instead of resuming the config's run")
    run.add_argument("--force-resume", action="store_true",
                     help="resume the config's run even if other code made it (another commit, a changed tree or "
                          "other package versions); every row records the commit that made it")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    fan_out = run.add_argument_group(
        "fan-out over many workers (Ray; pip install 'sparsebench[ray]'; see bench/distributed.py)")
    fan_out.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                         help="run the units' batches as Ray tasks: on a local Ray cluster started here (no "
                              "ADDRESS), the cluster of this node ('auto') or a Ray Client address "
                              "('ray://host:10001'). This process alone writes the store.")
    fan_out.add_argument("--shard-batches", type=int, default=1, metavar="N",
                         help="batches per task (default: 1); more amortise each task's model load and warm-up")
    fan_out.add_argument("--retries", type=int, default=2, help="extra attempts for a failed task (default: 2)")
    fan_out.add_argument("--gpus-per-task", type=float, default=0,
                         help="GPUs each task asks Ray for (default: 0; 1 on GPU nodes)")
    run.set_defaults(func=cmd_run)

    lst = sub.add_parser("list", help="print the attack registry")
    lst.add_argument("-v", "--verbose", action="store_true", help="full citations and default hyperparameters")
    lst.add_argument("--configs", action="store_true", help="list the packaged configs instead, one line each")
    lst.set_defaults(func=cmd_list)

    models = sub.add_parser("models", help="print the model registry (and cached accuracy of our own models)")
    models.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: as for run)")
    models.set_defaults(func=cmd_models)

    report = sub.add_parser("report", help="write the tables of a stored run (Markdown, LaTeX, CSV)")
    store_options(report)
    report.add_argument("--run", help="run id (default: the latest run)")
    report.set_defaults(func=cmd_report)

    parity = sub.add_parser(
        "parity", help="each native baseline beside its reference implementation (pass/fail per model and mode)",
        description="Pair each native attack of a stored run with its reference (the registry entry "
                    "library/<native name>, or reports.parity.PARITY) and write per model and mode both fooling "
                    "rates, both median L0s, their ratio, the native attack's wins/ties/losses sample by sample, "
                    f"and whether it meets the goal: fooling rate lower by at most {FOOLED_SLACK} sample, median L0 "
                    f"at most {L0_RATIO_MAX:g}x. Writes parity.{{md,tex,csv}} under --out/<run>.",
        epilog="Example: sparsebench run --config parity-offline && sparsebench parity")
    store_options(parity)
    parity.add_argument("--run", help="run id (default: the latest run)")
    parity.add_argument("--check", action="store_true", help="exit 1 when a pair misses the goal")
    parity.set_defaults(func=cmd_parity)

    compare = sub.add_parser(
        "compare", help="compare two attacks of a stored run sample by sample (sign test, intervals)",
        description="Per dataset, model and mode of a stored run, compare attack A with attack B on the samples "
                    "both ran on: each one's fooling rate with its Wilson 95%% interval, A's wins, ties and losses "
                    "(lower L0 wins; a success beats a failure; two failures tie), the two-sided sign test's "
                    "p-value on the non-tied samples, the Wilcoxon signed-rank p-value when neither failed on any "
                    "sample, and the median of L0(A) / L0(B) over samples both fooled with its bootstrap 95%% "
                    "interval. From the store alone; see reports/stats.py.",
        epilog="Example: sparsebench compare --run default-0123abcd lin2025 fmn-l0 --unit pixels")
    compare.add_argument("a", metavar="A", help="attack label as in the run's config")
    compare.add_argument("b", metavar="B", help="attack label to compare A with")
    compare.add_argument("--run", help="run id (default: the latest run)")
    compare.add_argument("--store", type=Path, default=DEFAULT_STORE,
                         help=f"SQLite results store (default: {DEFAULT_STORE})")
    compare.add_argument("--unit", choices=UNITS, default=None,
                         help="count L0 in pixels (any channel changed) or elements (default: the run's budget unit)")
    compare.set_defaults(func=cmd_compare)

    transfer = sub.add_parser(
        "transfer", help="evaluate a run's stored examples on other models (transferability matrix)",
        description="Rebuild every adversarial example of a stored run from the clean data and classify it "
                    "with each target model, without re-running any attack; write the matrix of the paper's "
                    "Table 3 (rows: attack on a source model, columns: evaluated model, * = white-box) as "
                    "transfer.{md,tex,csv} and every cell's counts as transfer-rates.csv.")
    store_options(transfer)
    transfer.add_argument("--run", help="run id (default: the latest run)")
    transfer.add_argument("--targets", nargs="+", metavar="MODEL",
                          help="models to evaluate on (default: the run's models); e.g. add mlp-standard")
    transfer.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    transfer.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: as for run)")
    transfer.set_defaults(func=cmd_transfer)

    reproduce = sub.add_parser(
        "reproduce", help="rerun one of the paper's tables and print ours beside the paper's numbers",
        description="Run (or resume) the config of one of Lin et al.'s experiments and write our measured "
                    "numbers beside the paper's, each labelled: ratios to a reference method, ranks, the rank "
                    "correlation per column and whether each of the paper's claims holds (the plain difference "
                    "only with --online, the paper's own setting). By default the offline "
                    "counterpart on the Fashion-MNIST models trained here (config paper-<table>-offline; "
                    "lin2025-fig7 for fig7); --online runs the paper's setting (CIFAR-10 and ImageNet with "
                    "RobustBench and torchvision models: config paper-<table>), which needs their data and "
                    "weights.")
    reproduce.add_argument("table", choices=REPRODUCIBLE, help="which table or figure")
    reproduce.add_argument("--online", action="store_true",
                           help="the paper's own setting (downloads or needs cached CIFAR-10/ImageNet data and weights)")
    store_options(reproduce)
    reproduce.add_argument("--cache-dir", type=Path, default=None, help="model and data cache (default: as for run)")
    reproduce.add_argument("--no-progress", action="store_true", help="no progress bars")
    reproduce.set_defaults(func=cmd_reproduce)

    bench = sub.add_parser(
        "bench", help="time attacks against the cost of the passes they make",
        description="Run each attack (--rounds times) on one batch of correctly classified test images (or, with "
                    "--synthetic, uniform random inputs on untrained weights) and compare its seconds per sample "
                    "with (forward - backward) x bare forward + backward x bare forward+backward time per sample of "
                    "the same model, batch and device (ratio 1.0 is the limit). call_ratio prices each of the "
                    "attack's calls at the bare model's time for a call of its own size instead, which is what "
                    "steps on a few remaining samples cost on a GPU. See bench/efficiency.py.")
    bench.add_argument("attacks", nargs="+", help="registry names; 'native' means every native attack")
    bench.add_argument("--model", default="smallcnn-standard", help="default: smallcnn-standard")
    bench.add_argument("--dataset", default="fashion-mnist", help="default: fashion-mnist")
    bench.add_argument("--batch-size", type=_batch_size, default=256,
                       help="samples in the timed batch, or 'auto': the largest that fits the device "
                            "(measured at two small batches, at most --samples; bench/speed.py) (default: 256)")
    bench.add_argument("--samples", type=int, default=4096,
                       help="with --batch-size auto, the most samples to time on (default: 4096)")
    bench.add_argument("--synthetic", action="store_true",
                       help="time on the model's architecture with untrained weights and uniform random "
                            "inputs (no weights or data needed; e.g. robustbench/Standard on cifar10)")
    bench.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                       help="autocast of the attacked model (default: fp32; fp16 needs CUDA)")
    bench.add_argument("--channels-last", action="store_true", help="attacked model in channels-last layout")
    bench.add_argument("--overrides-from", metavar="CONFIG",
                       help="take each attack's overrides from this config's [[attacks]] (file or packaged name)")
    bench.add_argument("--out", type=Path, default=None,
                       help="also write bench.md, bench.csv and bench.json (with the command and hardware) here")
    bench.add_argument("--modes", nargs="+", default=["untargeted", "targeted"], choices=["untargeted", "targeted"])
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--rounds", type=int, default=3,
                       help="timed runs of each attack, each followed by the bare passes; the ratio is the "
                            "median of the rounds' ratios (default: 3)")
    bench.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                       help="wall time (default), or this process's CPU time (CPU devices only): on a "
                            "machine shared with other jobs, CPU time keeps the ratio steady")
    bench.add_argument("--count-ops", action="store_true",
                       help="run each attack once more, untimed, counting its tensor operations: op_ratio (its "
                            "operations over the bare model's for the same calls: a step's cost on a GPU bound by "
                            "kernel launches), attack_ops_per_call and syncs_per_call (host-device "
                            "synchronisations per forward call); the same on any device")
    bench.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: as for run)")
    bench.add_argument("--max-ratio", type=float, default=None,
                       help="exit 1 if an attack's ratio exceeds this (e.g. 1.15)")
    bench.set_defaults(func=cmd_bench)

    runs = sub.add_parser("runs", help="list the runs in a store")
    runs.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"default: {DEFAULT_STORE}")
    runs.set_defaults(func=cmd_runs)

    baseline = sub.add_parser(
        "baseline", help="write a regression baseline (TOML) of a stored run",
        description="Write the numbers of a stored run that later runs must keep, per dataset/model/attack/mode: "
                    "fooling rate, median L0 (pixels, elements), seconds per sample, samples; with tolerances "
                    "(edit them in the file, also per unit) and the run's provenance and config, so that "
                    "`sparsebench check --rerun` can run it again.",
        epilog="example: sparsebench run --config gate.toml && sparsebench baseline --out baseline.toml")
    baseline.add_argument("--store", type=Path, default=DEFAULT_STORE,
                          help=f"SQLite results store (default: {DEFAULT_STORE})")
    baseline.add_argument("--run", help="run id (default: the latest run in the store)")
    baseline.add_argument("--out", type=Path, required=True,
                          help="baseline file to write: TOML, or JSON when the name ends in .json")
    baseline.add_argument("--tolerance-fooling-rate", type=float, metavar="PTS",
                          help="percentage points the fooling rate may fall "
                               f"(default: {DEFAULT_TOLERANCES['fooling_rate_drop_points']})")
    baseline.add_argument("--tolerance-l0", type=float, metavar="FRACTION",
                          help="relative rise allowed for median L0, pixels and elements "
                               f"(default: {_tolerance_percent('median_l0_rise_fraction')})")
    baseline.add_argument("--tolerance-time", type=float, metavar="FRACTION",
                          help="relative rise allowed for seconds per sample "
                               f"(default: {_tolerance_percent('seconds_rise_fraction')})")
    baseline.set_defaults(func=cmd_baseline)

    check_parser = sub.add_parser(
        "check", help="check a run against a baseline; exit 1 on a regression",
        description="Compare a run with a baseline unit by unit and print a table (unit, metric, baseline, now, "
                    "allowed, verdict). Exit 0 when nothing regressed, 1 when something did (each regression "
                    "named on stderr), 2 on a usage error. A unit missing from the run fails; a unit new in the "
                    "run, and an improvement, are reported only. Seconds per sample are compared only when "
                    "the hardware matches the baseline's.",
        epilog="The run checked is --run, else the latest run in --store of the baseline's config name "
               "(`sparsebench run` resumes a finished run rather than running it again: use a fresh store, "
               "or --rerun).")
    check_parser.add_argument("--baseline", type=Path, required=True,
                              help="baseline file (from `sparsebench baseline`)")
    check_parser.add_argument("--store", type=Path, default=DEFAULT_STORE,
                              help=f"SQLite results store to read the run from, or with --rerun to write it to "
                                   f"(default: {DEFAULT_STORE})")
    which = check_parser.add_mutually_exclusive_group()
    which.add_argument("--run", help="run id (default: the latest run of the baseline's config name)")
    which.add_argument("--rerun", action="store_true",
                       help="run the baseline's config again (a new run in --store) and check that run")
    check_parser.add_argument("--cache-dir", type=Path, default=None,
                              help="with --rerun: model and data cache "
                                   "(default: $SPARSEBENCH_CACHE or ~/.cache/sparsebench)")
    check_parser.add_argument("--compare-time", choices=COMPARE_TIME, default="auto",
                              help="auto (default): compare seconds per sample only on the baseline's hardware; "
                                   "always; never")
    check_parser.add_argument("--no-progress", action="store_true", help="with --rerun: hide progress bars")
    check_parser.set_defaults(func=cmd_check)

    leaderboard_out = DEFAULT_OUT / "leaderboard"
    leaderboard = sub.add_parser(
        "leaderboard", help="rank the attacks of stored runs (Markdown and a self-contained HTML page)",
        description="Rank the attacks per dataset, model and mode by AttackBench's optimality score (area under "
                    "the robust-accuracy-against-L0 curve relative to the per-sample best any compared attack "
                    "found; 1.0 = the best on every sample), by fooling rate within each L0 budget and overall, "
                    "and by median L0 over successful samples. Only samples that every compared attack ran on "
                    "count; the pages say how many were dropped. Writes leaderboard.md and leaderboard.html "
                    "(inline CSS, JS and figures: opens offline; click a header to sort, or add "
                    "#sort=<table id>:<column>:<asc|desc> to its URL) from the store alone.",
        epilog="Example: sparsebench leaderboard --run default-0123abcd --run offline-search-4567ef01 "
               "--budgets 1,5,20 --out results/leaderboard")
    leaderboard.add_argument("--store", type=Path, default=DEFAULT_STORE,
                             help=f"SQLite results store (default: {DEFAULT_STORE})")
    leaderboard.add_argument("--run", action="append", metavar="ID",
                             help="run id; repeat to combine runs that attacked the same samples of the same "
                                  "models with different attacks (default: the latest run)")
    leaderboard.add_argument("--out", type=Path, default=leaderboard_out,
                             help=f"output folder (default: {leaderboard_out})")
    leaderboard.add_argument("--budgets", metavar="K,K,...",
                             help="L0 budgets for the fr@k columns, e.g. 1,2,5,10 (default: the runs' config "
                                  "budgets)")
    leaderboard.add_argument("--unit", choices=UNITS, default=None,
                             help="count L0 in pixels (any channel changed) or elements (default: the first run's "
                                  "budget unit)")
    leaderboard.set_defaults(func=cmd_leaderboard)

    interpret = sub.add_parser(
        "interpret", help="Grad-CAM of a run's stored examples: obscuring and leading noise (Lin et al., Sec. 5.3)",
        description="Rebuild a run's successful adversarial examples from the store and split each perturbation "
                    "with Grad-CAM: a perturbed pixel is 'obscuring' when it lies in the true class's evidence "
                    "region on the clean image, 'leading' when it lies in the adversarial class's evidence region "
                    "on the adversarial image, 'both' or 'neither' otherwise; a class's evidence region is the top "
                    "--quantile fraction of its Grad-CAM map (rectified, upsampled, normalised to [0, 1]). Writes "
                    "per attack a folder <out>/<run>/interpret/<model>-<attack>-<mode>/ with interpret.md (mean "
                    "and median fractions over the samples beside chance), interpret.png (clean, adversarial, "
                    "perturbation, Grad-CAM and Guided Grad-CAM of both classes, as the paper's Figures 4 and 6) "
                    "and interpret-samples.csv. Needs the grad-cam package: " + INSTALL + ".",
        epilog="Example: sparsebench interpret --store results/sparsebench.sqlite --attack lin2025-improved "
               "--attack fmn-l0 --model smallcnn-standard --mode targeted --samples 50")
    interpret.add_argument("--store", type=Path, default=DEFAULT_STORE,
                           help=f"SQLite results store (default: {DEFAULT_STORE})")
    interpret.add_argument("--run", help="run id (default: the latest run)")
    interpret.add_argument("--attack", action="append", required=True, metavar="LABEL",
                           help="attack label as in the run's config; repeat for several (one report each)")
    interpret.add_argument("--model", required=True, help="model name as in the run (e.g. smallcnn-standard)")
    interpret.add_argument("--mode", choices=["untargeted", "targeted"], default="untargeted",
                           help="default: untargeted")
    interpret.add_argument("--dataset", help="only when the run attacked the model on several datasets")
    interpret.add_argument("--samples", type=int, default=50,
                           help="successful examples to interpret, the first by test index (default: 50)")
    interpret.add_argument("--quantile", type=float, default=DEFAULT_QUANTILE,
                           help=f"top fraction of a Grad-CAM map that counts as a class's evidence, in (0, 1] "
                                f"(default: {DEFAULT_QUANTILE})")
    interpret.add_argument("--figure-samples", type=int, default=4, help="rows of the figure (default: 4)")
    interpret.add_argument("--target-layer", metavar="NAME",
                           help="Grad-CAM layer by dotted module name, e.g. features.4 (default: the rectified last "
                                "conv layer of SmallCNN and VGG, layer4[-1] of ResNets, else the last Conv2d)")
    interpret.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    interpret.add_argument("--cache-dir", type=Path, default=None,
                           help="model cache (default: $SPARSEBENCH_CACHE or ~/.cache/sparsebench)")
    interpret.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    interpret.set_defaults(func=cmd_interpret)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = "sparsebench " + shlex.join(argv)  # what a result records as the command that made it
    try:
        return args.func(args)
    except (SparseBenchError, ImportError) as error:  # what the user can fix; anything else is a bug: traceback
        print(f"sparsebench: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `sparsebench list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
