"""Names from configs and stores are data: they never write outside --out, and never turn into markup or commands."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shlex
import shutil
import sqlite3
from pathlib import Path

import pytest

from bench.cli import build_parser, main
from bench.config import parse_config
from bench.errors import SparseBenchError
from bench.paths import inside
from bench.runner import run_benchmark
from bench.store import ResultsStore
from reports.escaping import latex_escape, markdown_code, markdown_code_block, markdown_escape

BASE = {
    "name": "sec", "n_samples": 3, "batch_size": 3, "modes": ["untargeted"], "budgets": [5],
    "datasets": [{"name": "fashion-mnist", "models": ["smallcnn-standard"]}],
    "attacks": [{"name": "i-fgsm", "overrides": {"eps": 0.3, "alpha": 0.05, "steps": 3}}],
}
EVIL_LABEL = "evil|<script>alert(1)</script>\n# injected `tick` [x](javascript:y) *b* & \\input{label}"
EVIL_NAME = "run|<b>bold</b> `tick` \\input{secret} 50% _x_"


@pytest.fixture(scope="module")
def plain_store(tmp_path_factory, tiny_model) -> tuple[Path, str]:
    """One small real run (ordinary names), made once; each test works on its own copy."""
    path = tmp_path_factory.mktemp("plain") / "s.sqlite"
    with ResultsStore(path) as store:
        run_id = run_benchmark(parse_config(BASE), store, load_model=lambda *_: tiny_model, progress=False)
    return path, run_id


def _copy(plain_store, directory: Path) -> tuple[Path, str]:
    source, run_id = plain_store
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, directory / "s.sqlite")
    return directory / "s.sqlite", run_id


def _rename_run(path: Path, old: str, new: str) -> None:
    """Edit a run id in the store by hand, as anyone with sqlite3 can."""
    with sqlite3.connect(path) as db:
        for table in ("runs", "units", "samples", "examples"):
            db.execute(f"UPDATE {table} SET run_id = ? WHERE run_id = ?", (new, old))


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _written_outside(root: Path, before: set[Path], out: Path, store: Path) -> set[Path]:
    allowed = {store, store.with_name(store.name + "-journal"), store.with_name(store.name + "-wal"),
               store.with_name(store.name + "-shm")}
    return {p for p in _files(root) - before if p not in allowed and out not in p.parents and p != out}


# 1. output paths ----------------------------------------------------------------------------------------------------


def test_inside_keeps_paths_under_the_root(tmp_path):
    root = tmp_path / "out"
    assert inside(root, "run-1") == root / "run-1"
    assert inside(root, "run-1", "interpret", "m-a-untargeted") == root / "run-1" / "interpret" / "m-a-untargeted"
    assert inside(root, "a/../b") == root / "b"  # stays inside: allowed, normalised
    assert inside(Path("results"), "r") == Path("results") / "r"  # a relative root stays relative
    for bad in ("../escaped", "../../../escaped", "a/../../escaped", str(tmp_path / "abs"), "/etc/x", "a\0b"):
        with pytest.raises(SparseBenchError, match="output path"):
            inside(root, bad)
    (root / "sub").mkdir(parents=True)
    (root / "link").symlink_to(tmp_path, target_is_directory=True)  # a link inside that leads out
    with pytest.raises(SparseBenchError, match="outside"):
        inside(root, "link", "x")


@pytest.mark.parametrize("bad", ["../../escaped", "ABSOLUTE"])
def test_report_refuses_a_run_id_edited_to_leave_out(tmp_path, plain_store, capsys, bad):
    store, run_id = _copy(plain_store, tmp_path / "store")
    bad = str(tmp_path / "abs-escaped") if bad == "ABSOLUTE" else bad
    _rename_run(store, run_id, bad)
    out = tmp_path / "a" / "b" / "out"
    before = _files(tmp_path)
    for argv in (["--run", bad], []):  # named, and as the store's latest run
        assert main(["report", "--store", str(store), "--out", str(out), *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "outside --out" in err
    assert not _written_outside(tmp_path, before, out, store)
    assert not (tmp_path / "a" / "escaped").exists() and not (tmp_path / "abs-escaped").exists()


@pytest.mark.parametrize("bad", ["../../../escaped", "ABSOLUTE"])
def test_run_refuses_a_config_name_that_leaves_out(tmp_path, tiny_model, monkeypatch, capsys, bad):
    """Whatever the config parser accepts, ``run`` writes its report inside --out or not at all."""
    import bench.cli
    import bench.config
    import bench.runner

    bad = str(tmp_path / "abs-escaped") if bad == "ABSOLUTE" else bad
    load_config, run = bench.config.load_config, bench.runner.run_benchmark
    monkeypatch.setattr(bench.cli, "load_config", lambda path: dataclasses.replace(load_config(path), name=bad))
    monkeypatch.setattr(bench.cli, "run_benchmark",
                        lambda *a, **k: run(*a, **{**k, "load_model": lambda *_: tiny_model}))
    config = tmp_path / "c.toml"
    config.write_text('name = "sec"\nn_samples = 3\nbatch_size = 3\nmodes = ["untargeted"]\nbudgets = [5]\n'
                      '[[datasets]]\nname = "fashion-mnist"\nmodels = ["smallcnn-standard"]\n'
                      '[[attacks]]\nname = "i-fgsm"\noverrides = { eps = 0.3, alpha = 0.05, steps = 3 }\n')
    store, out = tmp_path / "s.sqlite", tmp_path / "x" / "y" / "z" / "out"
    before = _files(tmp_path)
    assert main(["run", "--config", str(config), "--store", str(store), "--out", str(out), "--no-progress"]) == 2
    assert "outside --out" in capsys.readouterr().err
    assert not _written_outside(tmp_path, before, out, store)


def test_transfer_and_interpret_refuse_a_run_id_that_leaves_out(tmp_path, plain_store, tiny_model, monkeypatch,
                                                                 capsys):
    import bench.cli

    store, run_id = _copy(plain_store, tmp_path / "store")
    _rename_run(store, run_id, "../../escaped")
    monkeypatch.setattr(bench.cli, "load_model", lambda *a, **k: tiny_model)
    written = []

    def interpretation(*args, out, **kwargs):  # stands in for Grad-CAM: writes where it is told
        out.mkdir(parents=True, exist_ok=True)
        (out / "interpret.md").write_text("x")
        written.append(out)
        raise AssertionError("interpretation ran")

    monkeypatch.setattr(bench.cli, "interpretation", interpretation)
    out = tmp_path / "a" / "b" / "out"
    before = _files(tmp_path)
    assert main(["transfer", "--store", str(store), "--run", "../../escaped", "--out", str(out),
                 "--device", "cpu"]) == 2
    assert "outside --out" in capsys.readouterr().err
    assert main(["interpret", "--store", str(store), "--run", "../../escaped", "--attack", "i-fgsm",
                 "--model", "smallcnn-standard", "--out", str(out), "--device", "cpu"]) == 2
    assert "outside --out" in capsys.readouterr().err and not written
    assert not _written_outside(tmp_path, before, out, store)


def test_sweep_figures_stay_in_their_folder_whatever_the_store_names(tmp_path):
    import pandas as pd

    from reports.plots import sweep_curves

    name = "/../../../x"  # an attack name edited in the store: "sweep-/../../../x-a.png" climbs out of plots/
    units = pd.DataFrame([
        {"attack": name, "attack_name": name, "hyperparameters": json.dumps({"a": 0.1})},
        {"attack": "s1", "attack_name": name, "hyperparameters": json.dumps({"a": 0.2})},
        {"attack": "s2", "attack_name": name, "hyperparameters": json.dumps({"a": 0.3})},
    ])
    summary = pd.DataFrame([{"dataset": "d", "model": "m", "attack": a, "mode": "untargeted", "fooling_rate": 50.0,
                             "median_l0_pixels": 3.0} for a in units["attack"]])
    with pytest.raises(SparseBenchError, match="outside"):
        sweep_curves(summary, units, tmp_path / "deep" / "plots")
    assert not list(tmp_path.rglob("*.png"))


# 2. escaping --------------------------------------------------------------------------------------------------------


def test_latex_escape_leaves_no_command_and_markdown_escape_no_markup():
    text = latex_escape("\\input{/etc/passwd} 50% & $x$ #1 a_b ~ ^ <|>\nnext")
    assert "\\input" not in text and "\n" not in text
    assert text.startswith("\\textbackslash{}input\\{/etc/passwd\\} 50\\% \\& \\$x\\$ \\#1 a\\_b ")
    # no special character is left bare: every one is a command's own or escaped
    assert not re.search(r"(?<!\\)[%&$#_^~]", re.sub(r"\\text[a-z]+\{\}", "", text))
    md = markdown_escape(EVIL_LABEL)
    assert "\n" not in md and "<script>" not in md and not re.search(r"(?<!\\)[|`<>\[\]*]", md)
    assert markdown_escape("fooling_rate fr@5 lin2025-a0.3") == "fooling_rate fr@5 lin2025-a0.3"  # plain names stay
    assert markdown_escape("_x_") == "\\_x\\_"
    assert markdown_code('{"a": "b`c``d"}') == '```{"a": "b`c``d"}```'
    assert markdown_code_block("a ```` b") == "`````sh\na ```` b\n`````"


def _escaped_store(tmp_path: Path, tiny_model) -> tuple[Path, str]:
    """A real run whose name and one attack label hold markup, built without the config parser (which may refuse
    them): the strings get into the store as an older or hand-edited store would hold them."""
    config = parse_config({**BASE, "attacks": [*BASE["attacks"], {**BASE["attacks"][0], "label": "i-fgsm-b"}]})
    attacks = (config.attacks[0], dataclasses.replace(config.attacks[1], label=EVIL_LABEL))
    config = dataclasses.replace(config, name=EVIL_NAME, attacks=attacks)
    path = tmp_path / "s.sqlite"
    with ResultsStore(path) as store:
        run_id = run_benchmark(config, store, load_model=lambda *_: tiny_model, progress=False)
    return path, run_id


def _table_rows_are_whole(page: str) -> None:
    """Every Markdown table row has as many unescaped ``|`` as its header, and no line or HTML was injected
    (outside code blocks, which print verbatim)."""
    page = re.sub(r"^(`{3,})sh\n.*?\n\1$", "", page, flags=re.S | re.M)
    page = re.sub(r"(?<![\\`])(`+)(?!`).*?(?<!`)\1(?!`)", "", page)  # code spans (JSON provenance)
    widths = []
    for line in page.splitlines():
        if line.startswith("|"):
            widths.append(len(re.findall(r"(?<!\\)\|", line)))
        elif widths:
            assert len(set(widths)) == 1, widths
            widths = []
    assert not re.search(r"^#+ injected", page, re.M) and "<script>" not in page and "<b>" not in page


def test_reports_escape_names_from_the_store(tmp_path, tiny_model):
    store, run_id = _escaped_store(tmp_path, tiny_model)
    out = tmp_path / "out"
    assert main(["report", "--store", str(store), "--run", run_id, "--out", str(out)]) == 0
    directory = inside(out, run_id)
    tex = (directory / "summary.tex").read_text()
    caption = tex[tex.index("\\caption{"):tex.index("\\label{")]
    assert "\\input" not in tex and "\\textbackslash{}input\\{secret\\}" in caption and "50\\%" in caption
    assert "evil\\textbar{}\\textless{}script\\textgreater{}" in tex
    body = tex[tex.index("\\midrule"):tex.index("\\bottomrule")].splitlines()[1:]
    assert len(body) == 2 and all(line.endswith("\\\\") for line in body)  # the newline did not split a row
    for name in ("summary.md", "report.md"):
        page = (directory / name).read_text()
        _table_rows_are_whole(page)
        assert "evil\\|\\<script\\>alert(1)\\</script\\>" in page and "\\`tick\\`" in page
    assert (directory / "report.md").read_text().startswith(f"# {markdown_escape(EVIL_NAME)} (")

    assert main(["leaderboard", "--store", str(store), "--run", run_id, "--out", str(tmp_path / "board")]) == 0
    page = (tmp_path / "board" / "leaderboard.md").read_text()
    _table_rows_are_whole(page)
    assert "evil\\|\\<script\\>alert(1)\\</script\\>" in page
    html = (tmp_path / "board" / "leaderboard.html").read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>bold" not in html


# 3. commands --------------------------------------------------------------------------------------------------------


def _regenerate(page: str) -> list[str]:
    """The argv of the command in the page's first code block after "Regenerate"."""
    match = re.search(r"Regenerate[^\n]*\n\n(`{3,})sh\n(.*?)\n\1\n", page, re.S)
    assert match, "no shell code block after 'Regenerate'"
    return shlex.split(match.group(2))


def test_printed_commands_are_shell_quoted(tmp_path, plain_store):
    where = tmp_path / "my store; touch pwned"
    store, run_id = _copy(plain_store, where)
    odd = "run one; echo 'pwned' $HOME `id`"
    _rename_run(store, run_id, odd)
    out = tmp_path / "out dir; rm -rf x"
    assert main(["report", "--store", str(store), "--run", odd, "--out", str(out)]) == 0
    argv = _regenerate((inside(out, odd) / "report.md").read_text())
    assert argv == ["sparsebench", "report", "--run", odd, "--store", str(store), "--out", str(out)]
    args = build_parser().parse_args(argv[1:])
    assert (args.run, args.store, args.out) == (odd, store, out)

    board = tmp_path / "board; x"
    assert main(["leaderboard", "--store", str(store), "--run", odd, "--out", str(board)]) == 0
    argv = _regenerate((board / "leaderboard.md").read_text())
    assert argv[:7] == ["sparsebench", "leaderboard", "--store", str(store), "--run", odd, "--out"]
    args = build_parser().parse_args(argv[1:])
    assert (args.store, args.run, args.out, args.unit, args.budgets) == (store, [odd], board, "pixels", "5")
    assert shlex.join(argv) in html.unescape((board / "leaderboard.html").read_text())
    assert not list(tmp_path.rglob("pwned"))
