"""An outside attack and model for SparseBench: what a researcher writes to benchmark their own work.

Named in a config (``config.toml`` beside this package) they need nothing
installed; installed (``pip install -e .``), the entry points in
``pyproject.toml`` register them under the names below.
"""

from bench.models import ModelEntry
from bench.registry import AttackEntry

ATTACK = AttackEntry(
    name="saliency-flip",
    function="sparsebench_example.attack:saliency_flip",
    kind="minimum-norm",
    norm="l0",
    source="native",
    modes=("untargeted", "targeted"),
    threat="white-box",
    citation="An example for SparseBench's documentation (a JSMA-like greedy; Papernot et al., arXiv:1511.07528)",
    smoke={"pixels_per_step": 4, "max_steps": 30},
    smoke_success=0.5,
)

MODEL = ModelEntry(
    name="example-mlp",
    datasets=("fashion-mnist",),
    source="sparsebench-example",
    target="trained",
    description="MLP (fc128), trained by the example package on first use and cached",
    citation="An example for SparseBench's documentation",
    function="sparsebench_example.model:trained",
)
