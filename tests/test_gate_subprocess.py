"""The regression gate catches a weakened *implementation* of an attack, run as a user runs it.

The config names an outside attack (``function = "my_attack:attack"``) and
never changes: only the module's source does. Each test runs the real
command line in subprocesses (``python -m bench.cli``): ``sparsebench run``
with a strong sparse attack, ``sparsebench baseline`` of that run; then the
module file is rewritten in place (same path, same function name) and
``sparsebench check --rerun`` must exit 1 naming the unit and the metric:

- an attack whose search stops early fools fewer images (its median L0 even
  looks better): the fooling rate catches it;
- an attack that keeps every success but leaves a faint trace on every other
  pixel fools exactly as often: the median L0 alone catches it.

With the strong source put back, the same check exits 0: the gate does not
just fail every rerun.

The subprocesses load ``smallcnn-standard`` through ``bench.models.load_model``
from a private ``$SPARSEBENCH_CACHE``, into which the module's fixture writes
a SmallCNN trained in a few seconds (``train_small_cnn`` on 4096 images, one
epoch), at the exact path of the default model (``small_cnn_cache_path``):
the real loader reads it instead of training the full model for a minute.
The session's own cache is left alone, so no other test meets this model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.models import small_cnn_cache_path
from bench.training import train_small_cnn
from reports.gate import DEFAULT_TOLERANCES

REPO = Path(__file__).resolve().parents[1]
LABEL = "my-sparse"
UNIT = f"fashion-mnist/smallcnn-standard/{LABEL}/untargeted"

CONFIG = f"""\
name = "gate-outside"
n_samples = 8
batch_size = 8
modes = ["untargeted"]
budgets = [5]
device = "cpu"

[[datasets]]
name = "fashion-mnist"
models = ["smallcnn-standard"]

[[attacks]]
function = "my_attack:attack"
label = "{LABEL}"
"""

# A minimum-norm L0 attack: a dense I-FGSM step (eps 1, so that it points each value to where it hurts most),
# then the fewest of its largest changes, from a growing list of sizes, that fool the model.
STRONG = '''\
"""A sparse attack for tests/test_gate_subprocess.py (written there; rewritten to weaken it)."""
import torch

from attacks.ifgsm import i_fgsm

SIZES = (4, 8, 16, 32, 64, 128, 256, 784)


def attack(model, inputs, labels, *, targeted=False, eps=1.0, steps=10):
    dense = i_fgsm(model, inputs, labels, targeted=targeted, eps=eps, alpha=eps / 4, steps=steps)
    delta = dense - inputs
    score = delta.abs().sum(1).flatten(1)
    order = score.argsort(1, descending=True)
    best = inputs.clone()
    done = torch.zeros(len(inputs), dtype=torch.bool, device=inputs.device)
    with torch.no_grad():
        for k in SIZES:
            mask = torch.zeros_like(score).scatter_(1, order[:, :k], 1.0).view(len(inputs), 1, *inputs.shape[2:])
            candidate = inputs + delta * mask
            prediction = model(candidate).argmax(1)
            fooled = prediction == labels if targeted else prediction != labels
            new = fooled & ~done
            best[new] = candidate[new]
            done |= fooled
        # PADDING
    return best
'''

# The search gives up after the third size: fewer images fooled (those that are, with fewer pixels).
WEAK_LOOP = "        for k in SIZES[:3]:\n"
# Every success is kept, but each value the attack left alone moves by 1/255 (towards the middle of [0, 1]),
# wherever the result still fools the model: the same successes, nearly every pixel changed.
PADDING = """\
        untouched = best == inputs
        faint = torch.where(inputs < 0.5, inputs + 1 / 255, inputs - 1 / 255)
        padded = torch.where(untouched & done.view(-1, 1, 1, 1), faint, best)
        prediction = model(padded).argmax(1)
        still = (prediction == labels if targeted else prediction != labels) & done
        best = torch.where(still.view(-1, 1, 1, 1), padded, best)
"""


def _variant(loop: str | None = None, padding: str | None = None) -> str:
    source = STRONG
    if loop is not None:
        assert source.count("        for k in SIZES:\n") == 1
        source = source.replace("        for k in SIZES:\n", loop)
    if padding is not None:
        assert source.count("        # PADDING\n") == 1
        source = source.replace("        # PADDING\n", padding)
    return source


WEAK = _variant(loop=WEAK_LOOP)
DENSER = _variant(padding=PADDING)


@pytest.fixture(scope="module")
def quick_cache(tmp_path_factory) -> Path:
    """A private model cache holding a quickly trained ``smallcnn-standard`` where the default one is read."""
    cache = tmp_path_factory.mktemp("quick-cache")
    model, metadata = train_small_cnn("fashion-mnist", "standard", seed=0, train_subset=4096, epochs=1,
                                      eval_pgd_images=1, eval_pgd_steps=1)
    path = small_cnn_cache_path("smallcnn-standard", "fashion-mnist", cache_dir=cache)
    assert path == cache / "models" / "fashion-mnist" / "smallcnn-standard-seed0.pt"
    path.parent.mkdir(parents=True)
    torch.save({key: value.detach().cpu() for key, value in model.state_dict().items()}, path)
    metadata.update(model="smallcnn-standard", training_settings="quick, for tests/test_gate_subprocess.py")
    path.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n")  # without it the loader retrains
    return cache


class Workspace:
    """A folder with the attack's module, the config, and the real command line run in subprocesses."""

    def __init__(self, root: Path, cache: Path) -> None:
        self.root = root
        self.module = root / "pkg" / "my_attack.py"
        self.module.parent.mkdir()
        (root / "cfg.toml").write_text(CONFIG)
        self.env = {
            **os.environ,
            "SPARSEBENCH_CACHE": str(cache),
            # The attack's module first; the checkout second, so the subprocess runs the code under test.
            "PYTHONPATH": os.pathsep.join([str(self.module.parent), str(REPO), os.environ.get("PYTHONPATH", "")]),
            # A rewritten module must be read from its source, never from a stale __pycache__.
            "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1",  # tiny batches: a second thread only competes with the rest of the machine
        }

    def write(self, source: str) -> None:
        self.module.write_text(source)
        assert not (self.module.parent / "__pycache__").exists()

    def sparsebench(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=300)

    def baseline_of_strong_run(self) -> None:
        self.write(STRONG)
        run = self.sparsebench("run", "--config", "cfg.toml", "--store", "s1.sqlite", "--no-progress")
        assert run.returncode == 0, run.stderr
        baseline = self.sparsebench("baseline", "--store", "s1.sqlite", "--out", "baseline.toml")
        assert baseline.returncode == 0, baseline.stderr
        text = (self.root / "baseline.toml").read_text()
        assert 'function = "my_attack:attack"' in text and f'attack = "{LABEL}"' in text

    def check(self, store: str) -> subprocess.CompletedProcess:
        # Seconds are not compared: on a shared machine two tiny runs can differ by more than the 50% allowed,
        # and what these tests hold an implementation to is its fooling rate and its sparsity.
        return self.sparsebench("check", "--baseline", "baseline.toml", "--rerun", "--store", store,
                                "--no-progress", "--compare-time", "never")


@pytest.fixture
def workspace(tmp_path, quick_cache) -> Workspace:
    return Workspace(tmp_path, quick_cache)


def _verdicts(stdout: str, unit: str) -> dict[str, tuple[str, str, str]]:
    """The check's table, for one unit: metric -> (baseline, now, verdict)."""
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] == unit:
            rows[cells[1]] = (cells[2], cells[3], cells[5])
    return rows


def test_check_catches_an_attack_whose_search_stops_early(workspace):
    workspace.baseline_of_strong_run()
    workspace.write(WEAK)

    result = workspace.check("s2.sqlite")
    assert result.returncode == 1, result.stdout + result.stderr
    verdicts = _verdicts(result.stdout, UNIT)
    baseline, now, verdict = verdicts["fooling_rate"]
    assert verdict == "regressed" and float(now) < float(baseline), verdicts
    assert f"{UNIT}: fooling rate {baseline} -> {now} (allowed drop 0.0)" in result.stderr
    assert "regression(s) against baseline.toml" in result.stderr
    # The same config: nothing but the implementation changed.
    assert "config differs" not in result.stdout
    # The weak attack even looks sparser: only the fooling rate gives it away.
    assert verdicts["median_l0_pixels"][2] in ("ok", "improved"), verdicts
    assert f"{UNIT}: median L0" not in result.stderr


def test_check_catches_a_denser_attack_at_the_same_fooling_rate_and_passes_the_original(workspace):
    workspace.baseline_of_strong_run()
    workspace.write(DENSER)

    result = workspace.check("s2.sqlite")
    assert result.returncode == 1, result.stdout + result.stderr
    verdicts = _verdicts(result.stdout, UNIT)
    # The fooling rate holds, within the default tolerance (which allows no drop at all) ...
    assert DEFAULT_TOLERANCES["fooling_rate_drop_points"] == 0.0
    baseline, now, verdict = verdicts["fooling_rate"]
    assert verdict == "ok" and now == baseline, verdicts
    assert f"{UNIT}: fooling rate" not in result.stderr
    # ... and the median L0 alone fails the check, in pixels and in elements (one channel: the same count).
    for metric, name in (("median_l0_pixels", "median L0 (pixels)"), ("median_l0_elements", "median L0 (elements)")):
        baseline, now, verdict = verdicts[metric]
        assert verdict == "regressed" and float(now) > (1 + DEFAULT_TOLERANCES["median_l0_rise_fraction"]) * float(
            baseline), verdicts
        assert f"{UNIT}: {name} {baseline} -> {now} (allowed rise 10%" in result.stderr
    assert "2 regression(s) against baseline.toml" in result.stderr
    assert "config differs" not in result.stdout

    # Control: the original implementation, put back at the same path, passes the same check.
    workspace.write(STRONG)
    control = workspace.check("s3.sqlite")
    assert control.returncode == 0, control.stdout + control.stderr
    assert {verdict for _, _, verdict in _verdicts(control.stdout, UNIT).values()} == {"ok"}
    assert "no regression against baseline.toml" in control.stderr
