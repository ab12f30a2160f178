"""``sparsebench``: run benchmarks, list attacks, write reports."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

__all__ = ["main"]

DEFAULT_STORE = Path("results") / "sparsebench.sqlite"
DEFAULT_OUT = Path("results")


def _report(store, run_id: str, out: Path, *, quiet: bool = False) -> dict[str, Path]:
    """Tables (Markdown, LaTeX, CSV), figures (PNG) and ``report.md`` of a stored run, from the store alone."""
    from reports.plots import example_grid, robust_accuracy_curves, sweep_curves, time_versus_l0
    from reports.tables import format_table, order_like_config, proposed_versus_best, summarize, write_tables

    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"--run: {run_id!r} is not in {store.path}; runs: {', '.join(store.runs()['run_id']) or 'none'}")
    config = run["config"]
    samples = store.samples(run_id)
    summary = summarize(samples, budgets=config["budgets"], budget_unit=config["budget_unit"])
    summary = order_like_config(summary, config)
    caption = (f"SparseBench run {run_id} (seed {run['seed']}, {run['hardware']['device']}, "
               f"commit {run['git_commit']}); L0 over successful samples; fr@k: budget in {config['budget_unit']}")
    directory = out / run_id
    paths = write_tables(summary, directory, caption=caption)
    comparison = proposed_versus_best(summary)
    comparison_caption = (f"The proposed attack (lin2025) beside the best other attack of run {run_id}: "
                          "ranked by fooling rate, then median L0 (pixels)")
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
    paths["report"] = _write_report_markdown(directory / "report.md", run, caption, format_table(summary),
                                             format_table(comparison) if not comparison.empty else None,
                                             comparison_caption, figures)
    if not quiet:
        print(format_table(summary).to_markdown(index=False))
        if not comparison.empty:
            print("\nThe proposed attack beside the best other attack (fooling rate, then median L0 in pixels):")
            print(format_table(comparison).to_markdown(index=False))
        print(f"\nreport: {paths['report']}; tables and plots beside it")
    return paths


def _write_report_markdown(path: Path, run: dict, caption: str, summary, comparison, comparison_caption: str,
                           figures: dict[str, Path]) -> Path:
    """One Markdown page: provenance, the comparison, the figures, the full table."""
    lines = [f"# {run['name']} ({run['run_id']})", "",
             f"Regenerate: `sparsebench report --run {run['run_id']}` (from the store; no attack reruns).", "",
             f"- created {run['created']}, finished {run.get('finished') or 'not yet'}; seed {run['seed']}",
             f"- commit {run['git_commit']}", f"- hardware: {run['hardware']}", f"- versions: {run['versions']}", ""]
    if comparison is not None:
        lines += ["## The proposed attack beside the best other attack", "", comparison_caption, "",
                  comparison.to_markdown(index=False), ""]
    lines += ["## Figures", ""]
    for title, figure in figures.items():
        lines += [f"### {title}", "", f"![{title}]({figure.relative_to(path.parent).as_posix()})", ""]
    lines += ["## All results", "", caption, "", summary.to_markdown(index=False), ""]
    path.write_text("\n".join(lines))
    return path


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import default_config_path, load_config, resolve_config
    from bench.runner import run_benchmark
    from bench.store import ResultsStore

    config = load_config(resolve_config(args.config) if args.config else default_config_path())
    run_id = f"{config.name}-{config.fingerprint()}"
    if args.new_run:
        run_id += time.strftime("-%Y%m%dT%H%M%S")
    with ResultsStore(args.store) as store:
        resumed = store.get_run(run_id) is not None
        print(f"{'resuming' if resumed else 'starting'} run {run_id} -> {args.store}", file=sys.stderr)
        started = time.perf_counter()
        try:
            run_benchmark(config, store, run_id=run_id, cache_dir=args.cache_dir, progress=not args.no_progress)
        except KeyboardInterrupt:
            print(f"\ninterrupted: whole batches are stored; run the same command to resume run {run_id}",
                  file=sys.stderr)
            return 130
        print(f"run {run_id} finished in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        _report(store, run_id, args.out)
    return 0


def _short_citation(citation: str) -> str:
    """``"Modas, ... arXiv:1811.02248; via ..."`` -> ``"Modas et al., arXiv:1811.02248"``."""
    import re

    author = re.split(r"[ ,]", citation, maxsplit=1)[0]
    own = citation.split(";")[0]  # the attack's own paper, not what it builds on or wraps
    arxiv = re.search(r"arXiv:\d{4}\.\d{4,5}", own)
    if arxiv:
        return f"{author} et al., {arxiv.group(0)}"
    venue = re.search(r"(?:CVPR|ICCV|ECCV|NeurIPS|ICML|ICLR|AAAI) \d{4}", own)
    return f"{author} et al., {venue.group(0)}" if venue else citation.split(",")[0]


def cmd_list(args: argparse.Namespace) -> int:
    import pandas as pd

    from bench.registry import ATTACKS

    rows = [
        {"name": e.name, "kind": e.kind, "norm": e.norm, "source": e.source, "modes": ", ".join(e.modes),
         "threat": e.threat, "citation": e.citation if args.verbose else _short_citation(e.citation)}
        for e in ATTACKS.values()
    ]
    print(pd.DataFrame(rows).to_markdown(index=False))
    if args.verbose:
        for entry in ATTACKS.values():
            print(f"\n{entry.name} defaults:")
            for family in (None, "mnist", "cifar10", "imagenet"):
                print(f"  {family or 'any'}: {entry.hyperparameters(family)}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import pandas as pd

    from bench.models import MODELS, model_metadata

    rows = []
    for entry in MODELS.values():
        for dataset in entry.datasets:
            row = {"name": entry.name, "dataset": dataset, "source": entry.source, "description": entry.description}
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


def open_run(store_path: Path, run: str | None):
    """The store at ``store_path`` and a run id in it (default: its latest run)."""
    from bench.store import ResultsStore

    if not Path(store_path).exists():
        raise ValueError(f"--store: {store_path} does not exist; run `sparsebench run` first")
    store = ResultsStore(store_path)
    run_id = run or store.latest_run_id()
    if run_id is None or store.get_run(run_id) is None:
        store.close()
        raise ValueError(f"--run: {run!r} is not in {store_path}" if run else f"--store: {store_path} holds no run")
    return store, run_id


def cmd_transfer(args: argparse.Namespace) -> int:
    from bench.models import load_model
    from bench.runner import resolve_device
    from reports.tables import write_tables
    from reports.transfer import transfer_matrix, transfer_rates

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
    paths = write_tables(matrix, args.out / run_id, stem="transfer", caption=caption)
    rates.to_csv(args.out / run_id / "transfer-rates.csv", index=False)
    print(caption + "\n")
    print(matrix.to_markdown(index=False))
    print(f"\ntables: {', '.join(str(p) for p in paths.values())}, {args.out / run_id / 'transfer-rates.csv'}")
    return 0


REPRODUCIBLE = ("table1", "table2", "table3", "table4", "fig7")


def _reproduce_config(table: str, online: bool) -> str:
    if table == "fig7":
        return "paper-fig7" if online else "lin2025-fig7"
    return f"paper-{table}" if online else f"paper-{table}-offline"


def cmd_reproduce(args: argparse.Namespace) -> int:
    from bench.config import load_config, resolve_config
    from bench.models import load_model
    from bench.runner import resolve_device, run_benchmark
    from bench.store import ResultsStore
    from reports.paper import PAPER_TABLES, compare_with_paper
    from reports.tables import summarize, write_tables
    from reports.transfer import transfer_rates

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
    caveat = ("" if args.online else
              " OFFLINE COUNTERPART: our column is a different experiment (Fashion-MNIST models trained by this "
              "package) from the paper's (CIFAR-10 / ImageNet); the difference compares the two, it does not "
              "check the paper's number.")
    caption = (f"{args.table}: {table.title}. 'paper' columns are the numbers Lin et al. report (arXiv:2506.17250, "
               f"Section 5); 'our' columns were measured by run {run_id} (`sparsebench reproduce {args.table}"
               f"{' --online' if args.online else ''}`).{caveat}")
    written = write_tables(comparison, args.out / run_id, stem=f"reproduce-{args.table}", caption=caption)
    print(caption + "\n")
    print(comparison.to_markdown(index=False, floatfmt=".4g"))
    print(f"\ntables: {', '.join(str(p) for p in written.values())}; full report: {paths['report']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import pandas as pd
    import torch

    from bench.efficiency import measure_efficiency
    from bench.models import load_model
    from bench.provenance import hardware
    from bench.registry import get_attack, get_entry
    from bench.runner import resolve_device, select_samples, choose_targets
    from bench.data import DATASETS, get_batch, load_dataset

    device = resolve_device(args.device)
    for name in args.attacks:
        get_entry(name)  # fail before any work on an unknown name
    model = load_model(args.model, args.dataset, cache_dir=args.cache_dir, device=device)
    dataset = load_dataset(args.dataset)
    selection = select_samples(model, dataset, n_samples=args.batch_size, seed=args.seed, device=device)
    inputs, labels = get_batch(dataset, selection.indices)
    inputs, labels = inputs.to(device), labels.to(device)
    targets = choose_targets(selection, how="random", seed=args.seed, num_classes=DATASETS[args.dataset].num_classes)
    rows = []
    for name in args.attacks:
        attack = get_attack(name, dataset=args.dataset)
        for mode in args.modes:
            if mode not in attack.entry.modes:
                continue
            torch.manual_seed(args.seed)
            result = measure_efficiency(attack, model, inputs, labels, rounds=args.rounds, clock=args.clock,
                                        targets=targets.to(device) if mode == "targeted" else None)
            rows.append(result.as_dict())
            print(f"{name} {mode}: ratio {result.ratio:.3f}", file=sys.stderr)
    table = pd.DataFrame(rows)
    print(f"model {args.model} ({args.dataset}), {len(labels)} correctly classified test images in one batch, "
          f"{hardware(device)}")
    print(table.to_markdown(index=False, floatfmt=".4g"))
    if args.max_ratio is not None:
        over = table[table["ratio"] > args.max_ratio]
        if not over.empty:
            print(f"ratio above {args.max_ratio}: {', '.join(over['attack'] + '/' + over['mode'])}", file=sys.stderr)
            return 1
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from bench.store import ResultsStore

    with ResultsStore(args.store) as store:
        print(store.runs().to_markdown(index=False))
    return 0


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
    run.add_argument("--config", help="TOML config file, or the name of a packaged config "
                                       "(default, offline-search, cifar10-robustbench, imagenet-torchvision; "
                                       "default: the offline Fashion-MNIST benchmark)")
    store_options(run)
    run.add_argument("--cache-dir", type=Path, default=None,
                     help="model and data cache (default: $SPARSEBENCH_CACHE or ~/.cache/sparsebench)")
    run.add_argument("--new-run", action="store_true", help="start a new run instead of resuming the config's run")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.set_defaults(func=cmd_run)

    lst = sub.add_parser("list", help="print the attack registry")
    lst.add_argument("-v", "--verbose", action="store_true", help="full citations and default hyperparameters")
    lst.set_defaults(func=cmd_list)

    models = sub.add_parser("models", help="print the model registry (and cached accuracy of our own models)")
    models.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: as for run)")
    models.set_defaults(func=cmd_models)

    report = sub.add_parser("report", help="write the tables of a stored run (Markdown, LaTeX, CSV)")
    store_options(report)
    report.add_argument("--run", help="run id (default: the latest run)")
    report.set_defaults(func=cmd_report)

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
                    "numbers beside the paper's, each labelled, with the difference. By default the offline "
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
        description="Run each attack (--rounds times) on one batch of correctly classified test images and compare its "
                    "seconds per sample with (forward - backward) x bare forward + backward x bare "
                    "forward+backward time per sample of the same model, batch and device (ratio 1.0 is the "
                    "limit). See bench/efficiency.py.")
    bench.add_argument("attacks", nargs="+", help="registry names")
    bench.add_argument("--model", default="smallcnn-standard", help="default: smallcnn-standard")
    bench.add_argument("--dataset", default="fashion-mnist", help="default: fashion-mnist")
    bench.add_argument("--batch-size", type=int, default=256, help="default: 256")
    bench.add_argument("--modes", nargs="+", default=["untargeted", "targeted"], choices=["untargeted", "targeted"])
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--rounds", type=int, default=3,
                       help="timed runs of each attack, each followed by the bare passes; the ratio is the "
                            "median of the rounds' ratios (default: 3)")
    bench.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                       help="wall time (default), or this process's CPU time (CPU devices only): on a "
                            "machine shared with other jobs, CPU time keeps the ratio steady")
    bench.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: as for run)")
    bench.add_argument("--max-ratio", type=float, default=None,
                       help="exit 1 if an attack's ratio exceeds this (e.g. 1.15)")
    bench.set_defaults(func=cmd_bench)

    runs = sub.add_parser("runs", help="list the runs in a store")
    runs.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"default: {DEFAULT_STORE}")
    runs.set_defaults(func=cmd_runs)
    from reports.gate import add_parser as add_gate_parsers
    from reports.interpret import add_parser as add_interpret_parser
    from reports.leaderboard import add_parser as add_leaderboard_parser

    add_gate_parsers(sub)
    add_leaderboard_parser(sub)
    add_interpret_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ImportError) as error:
        print(f"sparsebench: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `sparsebench list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
