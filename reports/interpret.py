"""Interpretation: Grad-CAM splits a sparse perturbation into obscuring and leading noise.

Lin et al. (arXiv:2506.17250, Section 5.3 and Appendix C.2, Figures 4 and 6)
compare Grad-CAM and Guided Grad-CAM (Selvaraju et al., ICCV 2017,
arXiv:1610.02391) of a clean image and of its sparse adversarial example, and
name two kinds of perturbed pixels: "obscuring noise" covers the evidence of
the true class, "leading noise" adds evidence of the adversarial class. The
paper points at boxes in two figures; this module states a rule and counts it
over the stored examples of a run (no attack is re-run).

The rule
--------
For one successful example ``x_adv`` of a clean image ``x`` of true class
``y``, classified as ``y_adv`` (the harness's verified prediction, stored as
``adversarial_prediction``):

* perturbed pixels ``P``: the positions (h, w) where any channel of ``x_adv``
  differs from ``x``, exactly what the store's ``l0_pixels`` counts;
* maps: ``M_true`` = Grad-CAM of ``y`` on ``x``; ``M_adv`` = Grad-CAM of
  ``y_adv`` on ``x_adv``; each rectified, upsampled bilinearly to the input
  size and min-max normalised to [0, 1] per image
  (:func:`attacks.gradcam.grad_cam`, which agrees with ``GradCAM`` of the
  ``grad-cam`` package, pytorch-grad-cam 1.5.7). The true class's evidence is
  read on the clean image, where it was before the perturbation covered it;
  the adversarial class's on the adversarial image, the only place it exists;
* evidence region of a map ``M`` at ``quantile`` q:
  ``R(M) = {p : M(p) >= (1 - q)-quantile of M, and M(p) > 0}``, the top q
  fraction of its pixels (more on ties), never a pixel at 0: a map with no
  positive evidence (0 everywhere) has an empty region;
* each pixel of ``P`` is exactly one of **obscuring** (in R(M_true), not in
  R(M_adv)), **leading** (in R(M_adv), not in R(M_true)), **both** or
  **neither**. A sample's four fractions are these counts over ``|P|`` and
  sum to 1; over many samples the report gives their mean and median.

Chance level: a pixel placed uniformly at random lands in R(M) with
probability ``|R(M)| / (H W)``, about q. Each row carries those region sizes
(``true_region_fraction``, ``adversarial_region_fraction``) so that
``obscuring + both`` (the perturbed pixels on the true class's evidence) reads
against the first and ``leading + both`` against the second; the summary's
``*_enrichment`` is the mean in-region fraction over the mean region size
(1 = no better than chance).

A control for "leading": the adversarial class's map is computed on the
adversarial image, with the perturbation in it, so part of its evidence may
be the perturbation itself. ``adversarial_on_clean_fraction`` is the fraction
of the perturbed pixels in the evidence region of the adversarial class's
map on the *clean* image, where that class's evidence was before; leading +
both well above it means the perturbation made evidence where it sits rather
than landing where the adversarial class already had some.

Why q = 0.2 by default: Grad-CAM at the last convolutional layer is coarse
(14x14 cells for SmallCNN and for VGG-16 at 224x224, 7x7 for ResNet-50). Its
top fifth is the class's main blob, like the boxes of Figures 4 and 6, which
cover a small part of the image; a larger q tends to the whole object (q = 1
takes every pixel with positive evidence), a smaller one to a few coarse
cells whose upsampled edges decide the count. At q = 0.2 chance is about 0.2,
so an enrichment up to 5x can show. Any run can be re-read at another q from
the store in seconds (``--quantile``).

Target layer
------------
:func:`default_target_layer`, the table :data:`attacks.gradcam.TARGET_LAYERS`
(the rectified maps of the last convolution that Grad-CAM's paper uses:
SmallCNN ``features[4]``, 14x14; VGG-16 ``features[29]``, 14x14 at 224;
``layer4[-1]`` for ResNets; ``relu`` for RobustBench's WideResNets), looking
through wrappers such as :func:`bench.models.torchvision_classifier`'s
``Sequential(normalize, model)``. A model without a ``Conv2d`` (SmallMLP) has
no Grad-CAM and raises. A caller passes another layer as a module or by its
dotted name (``"features.4"``, ``"model.layer4.2"``).

The grad-cam package draws the figure (Guided Grad-CAM and its display);
the maps and the counts need only torch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from attacks import gradcam
from attacks.gradcam import default_target_layer
from attacks.norms import changed
from bench.config import stored_dataset
from bench.errors import SparseBenchError
from bench.paths import inside
from reports.escaping import markdown_code_block, markdown_escape, option, shell_command
from reports.plots import _pyplot
from reports.transfer import rebuild_examples

__all__ = [
    "CATEGORIES", "DEFAULT_QUANTILE", "FILES", "INSTALL", "categorize", "default_target_layer", "evidence_region",
    "grad_cam", "guided_grad_cam", "interpretation", "noise_summary", "require_grad_cam", "resolve_target_layer",
    "unit_folder",
]

#: The four kinds of perturbed pixel, in the order of :func:`categorize`'s codes 0 to 3.
CATEGORIES = ("obscuring", "leading", "both", "neither")
DEFAULT_QUANTILE = 0.2
COLOURS = {"obscuring": "red", "leading": "lime", "both": "orange", "neither": "deepskyblue"}
FILES = {"figure": "interpret.png", "report": "interpret.md", "samples": "interpret-samples.csv"}

ModelLoader = Callable[[str, str], nn.Module]

INSTALL = "pip install 'sparsebench[interpret]' (the grad-cam==1.5.7 package)"


def _grad_cam_package():
    """Import pytorch-grad-cam, or say which extra installs it."""
    try:
        import pytorch_grad_cam
    except ImportError as error:
        raise ImportError(f"interpret needs the grad-cam package: {INSTALL}") from error
    return pytorch_grad_cam


def require_grad_cam() -> None:
    """Raise ``ImportError`` naming the extra that installs it unless the grad-cam package imports."""
    _grad_cam_package()


def _check_quantile(quantile: float) -> None:
    if not 0 < quantile <= 1:
        raise SparseBenchError(f"quantile: {quantile!r} is not in (0, 1]; it is the top fraction of a map's pixels "
                         "that counts as a class's evidence (default 0.2)")


# --------------------------------------------------------------------------
# The rule


def evidence_region(cam: np.ndarray, quantile: float = DEFAULT_QUANTILE) -> np.ndarray:
    """A class's evidence in a Grad-CAM map: its top ``quantile`` fraction of pixels, none at 0.

    Parameters
    ----------
    cam : numpy.ndarray
        One map ``(H, W)``, values in [0, 1].
    quantile : float
        Top fraction q in (0, 1]: pixels at or above the map's (1 - q)-quantile.

    Returns
    -------
    numpy.ndarray
        Boolean ``(H, W)``; empty where the map is 0 everywhere.
    """
    _check_quantile(quantile)
    cam = np.asarray(cam, dtype=np.float64)
    return (cam >= np.quantile(cam, 1.0 - quantile)) & (cam > 0)


def categorize(perturbed: np.ndarray, true_region: np.ndarray, adversarial_region: np.ndarray) -> np.ndarray:
    """Each perturbed pixel's kind: 0 obscuring, 1 leading, 2 both, 3 neither; -1 where not perturbed.

    Parameters
    ----------
    perturbed : numpy.ndarray
        Boolean ``(H, W)``: where any channel changed.
    true_region, adversarial_region : numpy.ndarray
        Boolean ``(H, W)``: :func:`evidence_region` of the true class's map on
        the clean image and of the adversarial class's map on the adversarial image.

    Returns
    -------
    numpy.ndarray
        int8 ``(H, W)``; ``np.bincount(codes[codes >= 0], minlength=4)`` counts
        the :data:`CATEGORIES`.
    """
    perturbed, true_region, adversarial_region = (np.asarray(a, dtype=bool)
                                                  for a in (perturbed, true_region, adversarial_region))
    if not perturbed.shape == true_region.shape == adversarial_region.shape:
        raise SparseBenchError(f"shapes: perturbed {perturbed.shape}, true_region {true_region.shape} and "
                         f"adversarial_region {adversarial_region.shape} must be equal")
    codes = np.select([true_region & ~adversarial_region, adversarial_region & ~true_region,
                       true_region & adversarial_region], [0, 1, 2], default=3).astype(np.int8)
    codes[~perturbed] = -1
    return codes


# --------------------------------------------------------------------------
# Grad-CAM


def resolve_target_layer(model: nn.Module, target_layer: nn.Module | str | None = None) -> nn.Module:
    """:func:`attacks.gradcam.resolve_target_layer`, with its error as a :class:`SparseBenchError` (a user's to fix)."""
    try:
        return gradcam.resolve_target_layer(model, target_layer)
    except ValueError as error:
        raise SparseBenchError(str(error)) from None


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _predict(model: nn.Module, images: Tensor, batch_size: int) -> list[int]:
    with torch.no_grad():
        return torch.cat([model(images[i:i + batch_size].to(_device(model))).argmax(1).cpu()
                          for i in range(0, len(images), batch_size)]).tolist()


def grad_cam(model: nn.Module, images: Tensor, classes: Sequence[int], *,
             target_layer: nn.Module | str | None = None, batch_size: int = 32) -> np.ndarray:
    """Grad-CAM of ``classes[i]`` on ``images[i]``, normalised to [0, 1] per image (:func:`attacks.gradcam.grad_cam`).

    Parameters
    ----------
    model : nn.Module
        Returns logits; its parameters may be frozen (gradients flow from the input).
    images : Tensor
        ``(B, C, H, W)`` in [0, 1].
    classes : sequence of int
        The class explained per image.
    target_layer : nn.Module or str, optional
        See :func:`attacks.gradcam.resolve_target_layer`.
    batch_size : int
        Images per forward and backward pass.

    Returns
    -------
    numpy.ndarray
        float32 ``(B, H, W)``.
    """
    if len(classes) != len(images):
        raise SparseBenchError(f"classes: {len(classes)} for {len(images)} images")
    layer = resolve_target_layer(model, target_layer)
    device = _device(model)
    maps = [np.zeros((0, *images.shape[2:]), dtype=np.float32)]
    for start in range(0, len(images), batch_size):
        part = images[start:start + batch_size].to(device)
        explained = torch.as_tensor([int(c) for c in classes[start:start + batch_size]], device=device)
        cams, _ = gradcam.grad_cam(model, part, explained, target_layer=layer)
        maps.append(cams.float().cpu().numpy())
    return np.concatenate(maps)


def guided_grad_cam(model: nn.Module, images: Tensor, classes: Sequence[int], cams: np.ndarray) -> np.ndarray:
    """Guided Grad-CAM: guided backpropagation of each class times its Grad-CAM map.

    Guided backpropagation runs on a copy of ``model`` (pytorch-grad-cam swaps
    its ReLUs), so ``model`` is left as it was.

    Returns
    -------
    numpy.ndarray
        float32 ``(B, C, H, W)``, unnormalised (display it with
        ``pytorch_grad_cam.utils.image.deprocess_image``).
    """
    _grad_cam_package()
    from pytorch_grad_cam import GuidedBackpropReLUModel

    guided = GuidedBackpropReLUModel(copy.deepcopy(model))
    result = []
    with torch.enable_grad():
        for image, cls, cam in zip(images, classes, cams):
            gradient = guided(image[None].clone().to(_device(model)), target_category=int(cls))  # (H, W, C)
            result.append(gradient.transpose(2, 0, 1) * cam[None])
    return np.asarray(result, dtype=np.float32).reshape(len(result), *images.shape[1:])


# --------------------------------------------------------------------------
# A run's examples


def interpretation(store, run_id: str, load_model: ModelLoader, *, attack: str, model: str,
                   mode: str = "untargeted", n_samples: int = 50, quantile: float = DEFAULT_QUANTILE,
                   dataset: str | None = None, target_layer: nn.Module | str | None = None,
                   figure_samples: int = 4, out: str | Path | None = None, batch_size: int = 32) -> pd.DataFrame:
    """Obscuring and leading noise of a run's stored examples, per sample (the rule: module docstring).

    Parameters
    ----------
    store : bench.store.ResultsStore
        The store holding the run.
    run_id : str
        The run.
    load_model : callable
        ``load_model(name, dataset) -> nn.Module``: the model the run attacked,
        prepared (eval mode) on the device to run Grad-CAM on.
    attack, model, mode : str
        The unit: attack label (as in the config), model name, ``"untargeted"``
        or ``"targeted"``.
    n_samples : int
        How many successful examples to interpret: the first by test-set index.
    quantile : float
        Top fraction q of a map that counts as a class's evidence.
    dataset : str, optional
        Needed only when the run attacked ``model`` on several datasets.
    target_layer : nn.Module or str, optional
        Grad-CAM's layer (default :func:`default_target_layer`).
    figure_samples : int
        Samples shown in the figure (the first ones; 0: no figure).
    out : str or Path, optional
        Folder for ``interpret.png`` (the figure of Figures 4 and 6),
        ``interpret.md`` (the report) and ``interpret-samples.csv``; None
        writes nothing.
    batch_size : int
        Images per Grad-CAM pass.

    Returns
    -------
    pandas.DataFrame
        One row per interpreted sample: ids, ``label``, ``adversarial_class``,
        ``agrees`` (the loaded model predicts ``label`` on the clean image and
        ``adversarial_class`` on the example, as the run's model did),
        ``l0_pixels`` (stored), ``perturbed_pixels`` (recounted), the count and
        ``*_fraction`` of each of :data:`CATEGORIES`, ``true_region_fraction``
        and ``adversarial_region_fraction`` (chance levels),
        ``region_overlap_fraction`` and ``adversarial_on_clean_fraction``
        (the control for leading noise).

    Raises
    ------
    ValueError
        A bad parameter, or no such unit, or no successful example in it.
    ImportError
        The grad-cam package is missing, and a figure is to be drawn.
    """
    _check_quantile(quantile)
    if n_samples < 1:
        raise SparseBenchError(f"n_samples: {n_samples} is not a positive number of samples")
    if figure_samples < 0:
        raise SparseBenchError(f"figure_samples: {figure_samples} is negative; 0 draws no figure")
    run, unit = _unit(store, run_id, attack=attack, model=model, mode=mode, dataset=dataset)
    dataset = unit["dataset"].iloc[0]
    successful = unit[unit["success"].astype(bool) & (unit["l0_pixels"] > 0)]
    if successful.empty:
        raise SparseBenchError(f"attack: {attack!r} made no successful example on {model!r} ({mode}) in run {run_id}; "
                         "only successful examples have an adversarial class to explain")
    chosen = successful.sort_values("sample_index").head(n_samples)
    data = stored_dataset(run["config"], dataset)
    clean, adversarial = rebuild_examples(store, run_id, dataset, data, chosen)[(model, attack, mode)]

    net = load_model(model, dataset)
    labels = chosen["label"].astype(int).tolist()
    adversarial_classes = chosen["adversarial_prediction"].astype(int).tolist()
    agrees = [a == b and c == d for a, b, c, d in zip(_predict(net, clean, batch_size), labels,
                                                       _predict(net, adversarial, batch_size), adversarial_classes)]
    maps = {"true": grad_cam(net, clean, labels, target_layer=target_layer, batch_size=batch_size),
            "adversarial": grad_cam(net, adversarial, adversarial_classes, target_layer=target_layer,
                                    batch_size=batch_size),
            "control": grad_cam(net, clean, adversarial_classes, target_layer=target_layer, batch_size=batch_size)}
    perturbed = changed(clean, adversarial).any(1).numpy()
    table, codes = _noise_table(chosen, perturbed, maps, agrees, quantile)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / FILES["samples"], index=False)
        shown = min(figure_samples, len(table))
        figure = None
        if shown:
            guided_true = guided_grad_cam(net, clean[:shown], labels[:shown], maps["true"][:shown])
            guided_adversarial = guided_grad_cam(net, adversarial[:shown], adversarial_classes[:shown],
                                                 maps["adversarial"][:shown])
            figure = _figure(out / FILES["figure"], table.head(shown), clean[:shown].numpy(),
                             adversarial[:shown].numpy(), maps["true"], maps["adversarial"], guided_true,
                             guided_adversarial, codes, quantile)
        _write_report(out / FILES["report"], table, figure, store=store, run_id=run_id, quantile=quantile,
                      successful=len(successful), attacked=len(unit), n_samples=n_samples)
    return table


def _unit(store, run_id: str, *, attack: str, model: str, mode: str, dataset: str | None) -> tuple[dict, pd.DataFrame]:
    """The run and the sample rows of one unit, with errors that list what the run holds."""
    if mode not in ("untargeted", "targeted"):
        raise SparseBenchError(f"mode: {mode!r} is not one of untargeted, targeted")
    run = store.get_run(run_id)
    if run is None:
        raise SparseBenchError(f"run: {run_id!r} is not in {store.path}")
    samples = store.samples(run_id)
    unit = samples[(samples["model"] == model) & (samples["attack"] == attack) & (samples["mode"] == mode)]
    if dataset is not None:
        unit = unit[unit["dataset"] == dataset]
    if unit.empty:
        units = sorted({"/".join(key) for key in samples[["dataset", "model", "attack", "mode"]]
                        .itertuples(index=False)})
        raise SparseBenchError(f"attack, model, mode: no samples of {attack!r} on {model!r} ({mode}"
                         f"{', ' + dataset if dataset else ''}) in run {run_id}; "
                         f"its units (dataset/model/attack/mode): {', '.join(units) or 'none'}")
    if unit["dataset"].nunique() > 1:
        raise SparseBenchError(f"dataset: {model!r} was attacked on {', '.join(unit['dataset'].unique())}; name one")
    return run, unit


def _noise_table(chosen: pd.DataFrame, perturbed: np.ndarray, maps: dict[str, np.ndarray], agrees: list[bool],
                 quantile: float) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The per-sample rows of :func:`interpretation` and each sample's :func:`categorize` codes."""
    rows, codes = [], []
    for i, sample in enumerate(chosen.itertuples()):
        true_region = evidence_region(maps["true"][i], quantile)
        adversarial_region = evidence_region(maps["adversarial"][i], quantile)
        code = categorize(perturbed[i], true_region, adversarial_region)
        codes.append(code)
        counts = np.bincount(code[code >= 0], minlength=len(CATEGORIES))
        total = int(counts.sum())
        rows.append({
            "dataset": sample.dataset, "model": sample.model, "attack": sample.attack, "mode": sample.mode,
            "sample_id": sample.sample_id, "sample_index": int(sample.sample_index),
            "label": int(sample.label), "adversarial_class": int(sample.adversarial_prediction), "agrees": agrees[i],
            "l0_pixels": int(sample.l0_pixels), "perturbed_pixels": total,
            **{name: int(n) for name, n in zip(CATEGORIES, counts)},
            **{f"{name}_fraction": float(n) / total for name, n in zip(CATEGORIES, counts)},
            "true_region_fraction": float(true_region.mean()),
            "adversarial_region_fraction": float(adversarial_region.mean()),
            "region_overlap_fraction": float((true_region & adversarial_region).mean()),
            "adversarial_on_clean_fraction":
                float(evidence_region(maps["control"][i], quantile)[perturbed[i]].sum()) / total,
        })
    return pd.DataFrame(rows), codes


def noise_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Over the samples of each (dataset, model, attack, mode): mean and median of each fraction.

    Besides ``<category>_mean`` and ``<category>_median`` (of the per-sample
    fractions), ``in_true_region`` (obscuring + both, mean) beside
    ``true_region`` (mean region size: chance) and their ratio
    ``true_enrichment``; the same for the adversarial class's region; and
    ``adversarial_on_clean``, the mean of the control for leading noise.
    """
    rows = []
    for key, group in table.groupby(["dataset", "model", "attack", "mode"], sort=False):
        row = dict(zip(["dataset", "model", "attack", "mode"], key))
        row["samples"] = len(group)
        row["median_l0_pixels"] = float(group["perturbed_pixels"].median())
        for name in CATEGORIES:
            row[f"{name}_mean"] = float(group[f"{name}_fraction"].mean())
            row[f"{name}_median"] = float(group[f"{name}_fraction"].median())
        for side, first in (("true", "obscuring"), ("adversarial", "leading")):
            inside = float((group[f"{first}_fraction"] + group["both_fraction"]).mean())
            chance = float(group[f"{side}_region_fraction"].mean())
            row[f"in_{side}_region"] = inside
            row[f"{side}_region"] = chance
            row[f"{side}_enrichment"] = inside / chance if chance else float("nan")
        row["adversarial_on_clean"] = float(group["adversarial_on_clean_fraction"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------
# Figure and report


def _figure(path: Path, rows: pd.DataFrame, clean: np.ndarray, adversarial: np.ndarray, true_maps: np.ndarray,
            adversarial_maps: np.ndarray, guided_true: np.ndarray, guided_adversarial: np.ndarray,
            codes: list[np.ndarray], quantile: float) -> Path:
    """The grid of Figures 4 and 6: a row per sample, seven panels."""
    from matplotlib.patches import Patch  # matplotlib (heavy) only when a figure is drawn, as in reports.plots
    from pytorch_grad_cam.utils.image import deprocess_image  # optional: the grad-cam extra

    plt = _pyplot()
    figure, axes = plt.subplots(len(rows), 7, figsize=(15, 2.4 * len(rows) + 0.8), squeeze=False)

    def show(axis, image: np.ndarray, **kwargs) -> None:  # (C, H, W) in [0, 1]
        if image.shape[0] == 1:
            axis.imshow(image[0], cmap="gray", vmin=0, vmax=1, **kwargs)
        else:
            axis.imshow(image.transpose(1, 2, 0), **kwargs)

    def mark(axis, code: np.ndarray, kinds: Sequence[int]) -> None:
        for kind in kinds:
            ys, xs = np.nonzero(code == kind)
            axis.scatter(xs, ys, s=10, marker="s", facecolors="none", linewidths=0.8,
                         edgecolors=COLOURS[CATEGORIES[kind]])

    for i, (row, panels) in enumerate(zip(rows.itertuples(), axes)):
        y, y_adv, code = row.label, row.adversarial_class, codes[i]
        show(panels[0], clean[i])
        panels[0].set_title(f"clean: class {y}", fontsize=8)
        show(panels[1], adversarial[i])
        panels[1].set_title(f"adversarial: class {y_adv}", fontsize=8)
        show(panels[2], clean[i], alpha=0.35)
        mark(panels[2], code, range(len(CATEGORIES)))
        panels[2].set_title(f"perturbation, L0 = {row.perturbed_pixels} px", fontsize=8)
        for axis, image, cam, kinds, title in ((panels[3], clean[i], true_maps[i], (0, 2), f"Grad-CAM {y} on clean"),
                                               (panels[4], adversarial[i], adversarial_maps[i], (1, 2),
                                                f"Grad-CAM {y_adv} on adversarial")):
            show(axis, image)
            axis.imshow(cam, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            axis.contour(evidence_region(cam, quantile).astype(float), levels=[0.5], colors="white", linewidths=0.8)
            mark(axis, code, kinds)
            axis.set_title(title, fontsize=8)
        for axis, guided, title in ((panels[5], guided_true[i], f"Guided Grad-CAM {y} on clean"),
                                    (panels[6], guided_adversarial[i], f"Guided Grad-CAM {y_adv} on adversarial")):
            shown = deprocess_image(guided.transpose(1, 2, 0))
            axis.imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap="gray")
            axis.set_title(title, fontsize=8)
        panels[0].set_ylabel(f"sample {row.sample_index}", fontsize=8)
        for axis in panels:
            axis.set_xticks([])
            axis.set_yticks([])
    legend = [Patch(facecolor="none", edgecolor=COLOURS[name],
                    label=f"{name} ({getattr(rows, name).sum()} px shown)") for name in CATEGORIES]
    figure.legend(handles=legend, loc="lower center", ncol=4, fontsize=8, frameon=False)
    figure.suptitle(f"{rows['attack'].iloc[0]} on {rows['model'].iloc[0]} ({rows['mode'].iloc[0]}): white contour = "
                    f"top {quantile:g} of the Grad-CAM map (a class's evidence region)", fontsize=9)
    figure.tight_layout(rect=(0, 0.04, 1, 0.97))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _rule_text(quantile: float) -> str:
    return (f"A perturbed pixel (any channel changed) is **obscuring** when it lies in the true class's evidence "
            f"region on the clean image and not in the adversarial class's on the adversarial image, **leading** "
            f"in the reverse case, **both** or **neither** otherwise. A class's evidence region is the top "
            f"{quantile:g} fraction of the pixels of its Grad-CAM map (rectified, upsampled, normalised to [0, 1] per "
            f"image; pixels at 0 never count). Chance: a pixel placed at random lands in a region with probability "
            f"its size (about {quantile:g}); enrichment = mean fraction of perturbed pixels in the region over its "
            f"mean size. Control for leading noise: the fraction in the adversarial class's evidence region on the "
            f"clean image, where that class's evidence was before the perturbation. See reports/interpret.py.")


def _write_report(path: Path, table: pd.DataFrame, figure: Path | None, *, store, run_id: str, quantile: float,
                  successful: int, attacked: int, n_samples: int) -> Path:
    first = table.iloc[0]
    summary = noise_summary(table).iloc[0]
    command = ["sparsebench", "interpret", *option("--store", store.path), *option("--run", run_id),
               *option("--attack", first["attack"]), *option("--model", first["model"]), "--mode", first["mode"],
               "--samples", str(n_samples), "--quantile", f"{quantile:g}"]
    fractions = pd.DataFrame(
        [{"perturbed pixels": name, "mean": summary[f"{name}_mean"], "median": summary[f"{name}_median"],
          "chance": ""} for name in CATEGORIES]
        + [{"perturbed pixels": f"in the {side} class's region ({first_kind} + both)",
            "mean": summary[f"in_{side}_region"],
            "median": float((table[f"{first_kind}_fraction"] + table["both_fraction"]).median()),
            "chance": f"{summary[f'{side}_region']:.3f}"}
           for side, first_kind in (("true", "obscuring"), ("adversarial", "leading"))]
        + [{"perturbed pixels": "control: in the adversarial class's region on the clean image",
            "mean": summary["adversarial_on_clean"], "median": float(table["adversarial_on_clean_fraction"].median()),
            "chance": ""}])
    disagreeing = int((~table["agrees"]).sum())
    empty = {side: int((table[f"{side}_region_fraction"] == 0).sum()) for side in ("true", "adversarial")}
    lines = [f"# Obscuring and leading noise: {markdown_escape(first['attack'])} on {markdown_escape(first['model'])} "
             f"({markdown_escape(first['dataset'])}, {markdown_escape(first['mode'])})", "",
             f"Run {markdown_escape(run_id)} of {markdown_escape(store.path)}. Regenerate (from the store, no attack "
             "reruns):", "", markdown_code_block(shell_command(command)),
             "", "## The rule", "", _rule_text(quantile), "",
             "## Fractions of the perturbed pixels", "",
             f"{len(table)} samples: the first {len(table)} (by test index) of the {successful} successful examples "
             f"among {attacked} attacked samples; median L0 {summary['median_l0_pixels']:g} pixels. Enrichment: "
             f"true class {summary['true_enrichment']:.2f}x, adversarial class "
             f"{summary['adversarial_enrichment']:.2f}x chance.", "",
             fractions.to_markdown(index=False, floatfmt=".3f"), ""]
    if any(empty.values()):
        lines += [f"Grad-CAM found no positive evidence (a map 0 everywhere, an empty region) for the true class on "
                  f"{empty['true']} clean image(s) and for the adversarial class on {empty['adversarial']} "
                  "adversarial image(s); their perturbed pixels count as neither on that side.", ""]
    if disagreeing:
        lines += [f"Note: on {disagreeing} sample(s) the model loaded now does not predict what the run's model did "
                  "(clean label or adversarial class): another model or device than the run's.", ""]
    if figure is not None:
        lines += ["## Figure", "", f"![{markdown_escape(first['attack'])} on {markdown_escape(first['model'])}]"
                  f"({figure.name})", ""]
    columns = ["sample_index", "label", "adversarial_class", "l0_pixels", *CATEGORIES, "true_region_fraction",
               "adversarial_region_fraction"]
    lines += ["## Per sample", "", f"Also in {FILES['samples']} (all columns).", "",
              table[columns].round(3).to_markdown(index=False), ""]
    path.write_text("\n".join(lines))
    return path


# --------------------------------------------------------------------------
# Where a unit's report goes


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def unit_folder(out: str | Path, run_id: str, *, model: str, attack: str, mode: str) -> Path:
    """``<out>/<run>/interpret/<model>-<attack>-<mode>/``, where ``sparsebench interpret`` writes one unit's
    :data:`FILES`; refused (:func:`bench.paths.inside`) unless it lies inside ``out``."""
    return inside(out, run_id, "interpret", _slug(f"{model}-{attack}-{mode}"))
