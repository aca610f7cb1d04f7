"""Reproduce the paper's weighting comparison at CPU scale on real HAM10000 images; write its results page.

A small `sampleweight grid`: the flat model (``cbam_vgg16`` with a small timm backbone, randomly
initialised), the paper's lesion-grouped 80/20 splits of all 10,015 HAM10000 images, each trained with
several seeds, and:

- under ADAM, the weightings none, cb, es, spl, ohem with cross-entropy (``--losses ce,focal`` adds
  focal loss), beside the paper's Table 2;
- under SGD, none, cb and es (``--sgd-weighters``), and ES once more with ``normalize=classes``
  (``--weighter-option es.normalize=classes``), beside the paper's Table 4: the paper-literal ES weighs
  a HAM10000 sample about 1e-3 on average, which under SGD is a ~1,000x smaller learning rate;
- today's long-tail baselines under ADAM beside them (``docs/long-tail.md``, ``docs/sampling.md``): ``drw``
  weighting (in ``--weighters``), re-sampling with ``class_balanced`` and ``drs`` and no weighting
  (``--samplers``), the losses ``logit_adjusted``, ``balanced_softmax`` and ``ldam`` with ``drw`` (LDAM-DRW;
  ``--long-tail``), and cRT (``sampleweight retrain --method crt``) on the ``none`` runs (``--retrain``).

With the defaults that is 5 + 1 + 2 + 3 = 11 ADAM setups, 3 + 1 SGD setups, x 2 splits x 2 seeds = 60
training runs (about 1 min of training each at this scale, 2 at a time: about 40-45 min of wall time on 2
cores) and 4 cRT stages (one epoch of the frozen network each, well under a minute).

Then the report (paired differences to ``none`` on the same images) and a check of which of the
paper's findings hold at this scale, each verdict from paired bootstrap tests with Holm's correction
(`sampleweight.studies.statistics`), written to ``docs/reproduction-cpu-results.md``.

The data folder is only read; the image cache and the run directories go to ``--out`` (default under
the system temp folder). Runs go to ``--processes`` worker processes of ``--threads`` threads each: on
a shared CPU one thread per process avoids OpenMP's spin-waiting on descheduled threads, which made
two-thread training about 10x slower here under load. The script is resumable (the grids are): rerun it
to finish an interrupted reproduction or to rewrite the document from finished runs. From the repository
root, on a 2-core machine shared with others:

    nice -n 10 python benchmarks/reproduce_ham10000.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

import sampleweight
from sampleweight.data import read_dataset, split_class_counts, split_indices
from sampleweight.engine.rundir import stage_of
from sampleweight.functional import deferred_start_epoch
from sampleweight.studies.grid import Grid, plan_grid, run_grid, run_stages
from sampleweight.studies.report import (
    METRIC_LABELS,
    ResultTable,
    markdown_comparisons,
    markdown_table,
    published,
    write_report,
)
from sampleweight.studies.statistics import COMPARED_METRICS, Difference, PairedBootstrap, holm
from sampleweight.weighting import class_mix_weights

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "HAM10000"
TIMING_FILE = "reproduction-timing.json"
NORMALIZED = "es-normalize-classes"
"""Subfolder of the SGD runs of ES with normalize=classes (their run names are those of the paper-literal ES)."""
BASELINE = "ce-none"
"""What every setup is compared with: CE, no weighting, the instance sampler (the table mixes losses and samplers)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="HAM10000 folder (read only)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "sampleweight-reproduction")
    parser.add_argument("--cache-dir", type=Path, default=None, help="image cache (default OUT/cache)")
    parser.add_argument("--backbone", default="test_resnet", help="timm backbone under CBAM")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="ADAM learning rate")
    parser.add_argument("--losses", default="ce")
    parser.add_argument("--weighters", default="none,cb,es,spl,ohem,drw", help="weightings under ADAM")
    parser.add_argument("--samplers", default="class_balanced,drs", help="samplers of ADAM runs with CE and no "
                        "weighting ('' for none)")  # fmt: skip
    parser.add_argument("--long-tail", default="logit_adjusted,balanced_softmax,ldam:drw",
                        help="ADAM runs of LOSS[:WEIGHTING] (default weighting none; '' for none)")  # fmt: skip
    parser.add_argument("--retrain", default="crt", help="stages added to the ADAM ce-none runs ('' for none)")
    parser.add_argument("--sgd-weighters", default="none,cb,es", help="weightings under SGD ('' for none)")
    parser.add_argument("--sgd-lr", type=float, default=1e-2, help="SGD (Nesterov) learning rate")
    parser.add_argument("--splits", default="0,1")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--bootstrap", type=int, default=2000, help="resamples of the paired tests")
    parser.add_argument("--processes", type=int, default=2, help="runs trained at once (worker processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "reproduction-cpu-results.md")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace) -> list[Grid]:
    """The grids: ADAM; SGD; SGD with ES at normalize=classes (in its own folder: same run names as ES)."""
    shared = {
        "data": args.data,
        "backbone": args.backbone,
        "pretrained": False,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "cache_dir": args.cache_dir or args.out / "cache",
    }
    axes = {"models": "cbam_vgg16", "losses": args.losses, "splits": args.splits, "seeds": args.seeds}
    adam = {**shared, "lr": args.lr}
    grids = [plan_grid(args.out, weighters=args.weighters, optimizers="adam", options=adam, **axes)]
    if args.samplers.strip():
        grids.append(plan_grid(args.out, weighters="none", samplers=args.samplers, optimizers="adam", options=adam,
                               **{**axes, "losses": "ce"}))  # fmt: skip
    for weighting, losses in long_tail_losses(args.long_tail).items():
        grids.append(plan_grid(args.out, weighters=weighting, optimizers="adam", options=adam,
                               **{**axes, "losses": ",".join(losses)}))  # fmt: skip
    if args.sgd_weighters.strip():
        sgd = {**shared, "lr": args.sgd_lr}
        grids.append(plan_grid(args.out, weighters=args.sgd_weighters, optimizers="sgd", options=sgd, **axes))
        grids.append(plan_grid(args.out / NORMALIZED, weighters="es", optimizers="sgd",
                               options={**sgd, "weighter_options": {"es.normalize": "classes"}}, **axes))  # fmt: skip
    return grids


def long_tail_losses(text: str) -> dict[str, list[str]]:
    """``"logit_adjusted,ldam:drw"`` as the losses of each weighting: ``{"none": [...], "drw": ["ldam"]}``."""
    grouped: dict[str, list[str]] = {}
    for item in (part.strip() for part in text.split(",")):
        if item:
            loss, _, weighting = item.partition(":")
            grouped.setdefault(weighting.strip() or "none", []).append(loss.strip())
    return grouped


def stage_grid(args: argparse.Namespace, grids: Sequence[Grid]) -> Grid:
    """The ADAM runs with CE, no weighting and the instance sampler: what ``--retrain`` re-balances."""
    adam = grids[0]
    runs = tuple(run for run in adam.runs if run.config.loss == "ce" and run.config.weighters == ["none"])
    return replace(adam, runs=runs)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the worker processes
    torch.set_num_threads(args.threads)
    grids = plan(args)
    methods = [m.strip() for m in args.retrain.split(",") if m.strip()]
    commit = _commit(args.doc)  # the code the runs train with (read now: the checkout may change while they run)
    started = time.perf_counter()
    devices = ["cpu"] * args.processes if args.processes > 1 else None
    outcomes = [o for grid in grids for o in run_grid(grid, devices=devices, progress=sys.stderr.isatty())]
    stages = run_stages(stage_grid(args, grids), methods) if methods else []
    done = sum(o.status == "trained" for o in outcomes) + sum(o.status == "retrained" for o in stages)
    timing = _add_timing(args.out, time.perf_counter() - started, trained=done, commit=commit, args=args)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise SystemExit(f"{len(failed)} runs failed, first: {failed[0].run.name}: {failed[0].error}")
    failed_stages = [o for o in stages if o.status != "retrained" and o.status != "skipped"]
    if failed_stages:
        raise SystemExit(f"{len(failed_stages)} stages did not finish, first: {failed_stages[0].path.name}: "
                         f"{failed_stages[0].error}")  # fmt: skip
    report = write_report(args.out, paper=True, baseline=BASELINE, resamples=args.bootstrap)
    splits = [int(s) for s in args.splits.split(",")]
    text = render(args, report.tables, timing, _split_sizes(args.data, splits), report.markdown, commit)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(text)
    print(f"wrote {args.doc} (grids under {args.out}, {timing['wall_seconds'] / 60:.1f} min of training wall time)")


# ----------------------------------------------------------------------------------------------- findings


@dataclass(frozen=True)
class Finding:
    """One of the paper's findings, tested on our runs."""

    claim: str
    paper: str
    ours: str
    verdict: str


Claim = tuple[str, str, str, int]
"""``(setup_a, setup_b, metric, sign)``, setups by `Cell.name` (``ce-cb``): the claim ``sign * (a - b) > 0``;
sign 0: no direction is claimed, the comparison asks which is higher."""
PAPER_EXCEPTION = " (not in this row of the paper's table: the finding is the paper's reading of Tables 2-5 overall)"


@dataclass(frozen=True)
class Planned:
    """A finding to test: its text, the paper's figures, and its claims on the cells of one table."""

    claim: str
    paper: str
    claims: list[Claim]
    table: ResultTable
    untestable: str | None = None
    """Why these runs cannot test it, though they measure it (the verdict then says so first)."""


SHORT_DEFERRAL = (
    "not testable at this schedule: DRS rebalances only in the last epoch here, at lr/100, so its weights barely "
    "move while BatchNorm's running statistics are re-estimated on class-balanced batches (its earlier epochs "
    "equal ce-none's exactly)"
)
"""The verdict's prefix for findings on DRS when its deferred phase is shorter than two epochs."""


def verdict(tests: Sequence[tuple[Claim, Difference]]) -> str:
    """From paired tests (Holm-adjusted p): every claim significant in its direction -> holds; one
    significantly against it -> does not hold; otherwise partly or not significant, with the direction."""
    if all(sign == 0 for (_, _, _, sign), _ in tests):
        return _two_sided(tests)
    supported = [sign * d.estimate > 0 and d.significant for (_, _, _, sign), d in tests]
    against = [sign * d.estimate < 0 and d.significant for (_, _, _, sign), d in tests]
    if any(against):
        return "does not hold (significantly against)"
    if all(supported):
        return "holds"
    if any(supported):
        return "partly holds"
    agree = all(sign * d.estimate > 0 for (_, _, _, sign), d in tests)
    return "not significant (same direction)" if agree else "not significant"


def _two_sided(tests: Sequence[tuple[Claim, Difference]]) -> str:
    """A comparison without a claimed direction: which setup is significantly higher, if either."""
    higher = []
    for (a, b, metric, _), d in tests:
        if d.significant:
            higher.append(f"{a if d.estimate > 0 else b} higher ({METRIC_LABELS.get(metric, metric)})")
    return "; ".join(higher) if higher else "no significant difference"


def paper_supports(row: dict[str, dict[str, float]], claims: list[Claim]) -> bool:
    """Whether the paper's own table row supports every claim (setups named ``loss-weighting``)."""
    return all(sign * (_paper(row, a, m) - _paper(row, b, m)) > 0 for a, b, m, sign in claims)


def _paper(row: dict[str, dict[str, float]], setup: str, metric: str) -> float:
    return row[setup.split("-", 1)[1]][metric]


def _paper_text(row: dict[str, dict[str, float]], claims: list[Claim]) -> str:
    """The paper's figures behind the claims (``BAcc 72.5 vs 78.8``), with a note where its row disagrees."""
    if not all(setup.split("-", 1)[1] in row for a, b, _, _ in claims for setup in (a, b)):
        return "not in the paper's table"
    text = ", ".join(
        f"{METRIC_LABELS[m]} {a.split('-', 1)[1].upper()} {_paper(row, a, m)} vs {b.split('-', 1)[1].upper()} "
        f"{_paper(row, b, m)}"
        for a, b, m, _ in claims
    )
    return text + ("" if paper_supports(row, claims) else PAPER_EXCEPTION)


def plan_findings(tables: Sequence[ResultTable], *, deferred_epochs: int | None = None) -> list[Planned]:
    """The paper's findings that these tables can test (and, under SGD, the weight-scale one).

    Args:
        tables: The report's tables.
        deferred_epochs: How many epochs DRS trains on rebalanced batches; under two, its findings are
            measured but marked untestable (`SHORT_DEFERRAL`).
    """
    short = deferred_epochs is not None and deferred_epochs < 2
    planned: list[Planned] = []
    for table in tables:
        cells = {cell.name for cell in table.cells}
        paper = published("cbam_vgg16", table.optimizer).get("results", {})  # the paper's flat model
        tag = table.optimizer.upper()
        candidates: list[tuple[str, str | None, list[Claim]]] = []  # (finding, the paper's text or None, claims)
        for loss in dict.fromkeys(c.loss for c in table.cells):
            name = {"ce": "CEL", "focal": "FL"}.get(loss, loss)
            for w in ("cb", "es"):
                claims = [(f"{loss}-{w}", f"{loss}-none", "bacc", 1), (f"{loss}-{w}", f"{loss}-none", "acc", -1)]
                candidates.append((f"{w.upper()} raises BAcc and lowers Acc ({name}, {tag})", None, claims))
            candidates.append(
                (f"ES keeps more Acc than CB ({name}, {tag})", None, [(f"{loss}-es", f"{loss}-cb", "acc", 1)])
            )
            candidates.append((f"OHEM beats SPL (BAcc and mF1, {name}, {tag})", None,
                               [(f"{loss}-ohem", f"{loss}-spl", m, 1) for m in ("bacc", "mf1")]))  # fmt: skip
            if "MEL" in table.classes:
                candidates.append((f"SPL hurts melanoma recall badly ({name}, {tag})",
                                   "stated in the text (Figures 1-2)",
                                   [(f"{loss}-spl", f"{loss}-none", "recall:MEL", -1)]))  # fmt: skip
            if table.optimizer == "sgd":
                candidates.append((f"ES at normalize=classes raises BAcc beyond the paper-literal ES ({name}, SGD)",
                                   "not a claim of the paper: the weight scale (docs/weighting.md)",
                                   [(f"{loss}-es-normalize=classes", f"{loss}-es", "bacc", 1)]))  # fmt: skip
        if table.optimizer == "adam":
            candidates += long_tail_candidates(tag)
        weightings = [c.weighting for c in table.cells if c.loss == "ce" and f"focal-{c.weighting}" in cells]
        if weightings:
            candidates.append((f"FL is slightly worse than CEL (BAcc, each weighting, {tag})",
                               "the paper's reading of Tables 2-5",
                               [(f"focal-{w}", f"ce-{w}", "bacc", -1) for w in weightings]))  # fmt: skip
        for text, paper_text, claims in candidates:
            if all(a in cells and b in cells for a, b, _, _ in claims):
                row = paper.get(claims[0][0].split("-", 1)[0], {})
                untestable = SHORT_DEFERRAL if short and any(DEFERRED in claim[:2] for claim in claims) else None
                planned.append(Planned(text, paper_text or _paper_text(row, claims), claims, table, untestable))
    return planned


CLASS_BALANCED, DEFERRED = "ce-none-sampler=class_balanced", "ce-none-sampler=drs"
"""The cells of re-sampling with the ``class_balanced`` and ``drs`` samplers (CE, no weighting)."""


def long_tail_candidates(tag: str) -> list[tuple[str, str, list[Claim]]]:
    """Findings of the long-tail literature (``docs/long-tail.md``, ``docs/sampling.md``) that these runs can test.

    Each compares with CE without weighting on the same images (BAcc: the balanced figure those papers report),
    except the re-sampling vs re-weighting comparisons, for which no direction is claimed.
    """
    return [
        (f"Class-balanced sampling raises BAcc (CEL, {tag})",
         "Kang et al. 2020, ImageNet-LT top-1 44.4 -> 45.1 (classifier-balancing README)",
         [(CLASS_BALANCED, "ce-none", "bacc", 1)]),
        (f"Deferred re-sampling (DRS) beats class-balanced sampling from the start (BAcc, CEL, {tag})",
         "BagofTricks-LT, CIFAR-100-LT error 66.47 -> 58.66", [(DEFERRED, CLASS_BALANCED, "bacc", 1)]),
        (f"Re-sampling vs re-weighting: class-balanced sampling vs CB (CEL, {tag})",
         "no direction claimed: an empirical question (docs/sampling.md)",
         [(CLASS_BALANCED, "ce-cb", m, 0) for m in ("bacc", "acc")]),
        (f"Deferred re-sampling vs deferred re-weighting: DRS vs DRW (CEL, {tag})",
         "no direction claimed (Cao et al. 2019 propose both)", [(DEFERRED, "ce-drw", m, 0) for m in ("bacc", "acc")]),
        (f"DRW raises BAcc (CEL, {tag})", "Cao et al. 2019 (deferred re-weighting)",
         [("ce-drw", "ce-none", "bacc", 1)]),
        (f"The logit-adjusted loss raises BAcc over CE ({tag})",
         "Menon et al. 2021, CIFAR-10-LT IF100 71.36 -> 77.89 (google-research logit_adjustment README)",
         [("logit_adjusted-none", "ce-none", "bacc", 1)]),
        (f"Balanced softmax raises BAcc over CE ({tag})", "BagofTricks-LT, CIFAR-10-LT IF100 error 30.12 -> 23.63",
         [("balanced_softmax-none", "ce-none", "bacc", 1)]),
        (f"Logit adjustment vs re-weighting: the logit-adjusted loss vs CB (CEL, {tag})",
         "no direction claimed (docs/long-tail.md)", [("logit_adjusted-none", "ce-cb", m, 0) for m in ("bacc", "acc")]),
        (f"LDAM-DRW raises BAcc over CE ({tag})", "Cao et al. 2019, Table 2, CIFAR-10-LT IF100 error 29.64 -> 22.97",
         [("ldam-drw", "ce-none", "bacc", 1)]),
        (f"cRT raises BAcc over the jointly trained classifier (CEL, {tag})",
         "Kang et al. 2020, ImageNet-LT top-1 44.4 -> 49.6 (classifier-balancing README)",
         [("ce-none+crt", "ce-none", "bacc", 1)]),
    ]  # fmt: skip


def findings(
    tables: Sequence[ResultTable], *, resamples: int = 2000, deferred_epochs: int | None = None
) -> list[Finding]:
    """Test each planned finding with paired bootstraps; Holm's correction over all the claims tested."""
    planned = plan_findings(tables, deferred_epochs=deferred_epochs)
    metrics = (*COMPARED_METRICS, "recall:MEL") if all("MEL" in t.classes for t in tables) else COMPARED_METRICS
    bootstrap = PairedBootstrap(metrics, resamples=resamples)
    tests: list[list[tuple[Claim, Difference]]] = []
    for item in planned:
        cells = {cell.name: cell for cell in item.table.cells}
        found = []
        for claim in item.claims:
            a, b, metric, _ = claim
            comparison = bootstrap.compare(cells[a].by_key, cells[b].by_key)
            found.append((claim, comparison.pooled[metrics.index(metric)]))
        tests.append(found)
    adjusted = iter(holm([d.p for found in tests for _, d in found]))
    results = []
    for item, found in zip(planned, tests, strict=True):
        found = [(claim, _with_holm(d, next(adjusted))) for claim, d in found]
        ours = "; ".join(_difference(claim, d) for claim, d in found)
        measured = verdict(found)
        results.append(Finding(item.claim, item.paper, ours, f"{item.untestable} (measured: {measured})"
                               if item.untestable else measured))  # fmt: skip
    return results


def _with_holm(difference: Difference, p_holm: float) -> Difference:
    return replace(difference, p_holm=float(p_holm))


def _difference(claim: Claim, d: Difference) -> str:
    a, b, metric, _ = claim
    label = METRIC_LABELS.get(metric, metric.replace("recall:", "recall "))
    return (f"{label} {a} - {b}: {100 * d.estimate:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}], "
            f"p {'< 0.001' if d.p_holm < 0.001 else f'{d.p_holm:.3f}'}")  # fmt: skip


def weight_scales(data: str, split: int, seed: int = 0) -> dict[str, float]:
    """Mean weight per sample under a split's training class mix, of the SGD setups' class weighters."""
    counts = split_class_counts(read_dataset(data), split, seed)
    scales = {"none": 1.0}
    for name, options in (("cb", {}), ("es", {}), ("es-normalize=classes", {"normalize": "classes"})):
        weighter = sampleweight.create_weighter(name.split("-")[0], class_counts=counts, **options)
        scales[name] = class_mix_weights(weighter, counts)[0][1]
    return scales


# ----------------------------------------------------------------------------------------------- document


def render(
    args: argparse.Namespace,
    tables: Sequence[ResultTable],
    timing: dict,
    sizes: dict[int, tuple[int, int]],
    report: Path,
    commit: str = "",
) -> str:
    """The Markdown of ``docs/reproduction-cpu-results.md``; ``commit`` names the code that trained (`_commit`)."""
    everything = [run for table in tables for cell in table.cells for run in cell.runs]
    runs = [run for run in everything if stage_of(run.config) is None]
    stages = [run for run in everything if stage_of(run.config) is not None]
    train_seconds = [sum(e["seconds"] for e in _epochs(run.path)) for run in runs]
    stage_text = ""
    if stages:
        stage_seconds = [sum(e["seconds"] for e in _epochs(run.path)) for run in stages]
        stage_text = (f" The {len(stages)} retrain stages (after the runs, one at a time) took "
                      f"{min(stage_seconds):.0f}-{max(stage_seconds):.0f} s of training each.")  # fmt: skip
    adam = next(table for table in tables if table.optimizer == "adam")
    sgd = next((table for table in tables if table.optimizer == "sgd"), None)
    untested = "flat vs hierarchical (one model, to stay within the CPU budget)"
    if "focal" not in {c.loss for c in adam.cells}:
        untested += "; FL vs CEL (`--losses ce,focal` adds the focal-loss runs and doubles the time)"
    split_text = "; ".join(
        f"split {s}: {n_train} training / {n_val} validation images" for s, (n_train, n_val) in sizes.items()
    )
    per_cell = sorted({cell.n for table in tables for cell in table.cells})
    lines = [
        "# The paper's comparison at CPU scale, on real HAM10000 images",
        "",
        "*Measured results of our CPU-scale reproduction; to rerun the paper's own settings on GPUs, see",
        "[reproduction-gpu-recipe.md](reproduction-gpu-recipe.md). Mixing (Mixup, Remix) on top of rebalancing at",
        "this scale: [reproduction-mixing.md](reproduction-mixing.md); sharpness-aware minimisation (SAM, ImbSAM) and",
        "weight balancing at the same scale: [reproduction-sam-wb.md](reproduction-sam-wb.md).*",
        "",
        "Generated by `benchmarks/reproduce_ham10000.py` (rerun it to regenerate this page). It trains small",
        "`sampleweight grid`s on the real HAM10000 images (the ISIC 2018 Task 3 training set) with the paper's",
        "protocol, each setup on several splits and seeds, and compares them with the paper's Tables 2 (flat",
        "model, ADAM) and 4 (flat, SGD); under ADAM, today's long-tail baselines run beside the paper's weightings",
        "(re-sampling, DRW, logit-adjusted and balanced-softmax losses, LDAM-DRW, cRT; docs/long-tail.md). At this",
        "scale the absolute figures cannot match the published ones: what can be compared is the direction of each",
        "effect, and whether it stands out from the noise (paired tests).",
        "",
        "## What ran",
        "",
        "```bash",
        _command(),
        "```",
        "",
        f"- Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC (machine clock); "
        f"sampleweight {sampleweight.__version__}{commit}, "
        f"torch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPU cores (shared with "
        "other work while this ran), no GPU.",
        _timing_text(timing, len(runs) + len(stages)) + "; training time per run "
        f"{min(train_seconds) / 60:.1f}-{max(train_seconds) / 60:.1f} min (the sum of its epochs in `metrics.jsonl`), "
        f"{sum(train_seconds) / 60:.0f} min in all." + stage_text,
        f"- Data: all {sum(sizes[next(iter(sizes))]):,} images of `{args.data}`, the paper's random lesion-grouped "
        f"80/20 splits, each with seeds {args.seeds} (the seed also draws the split; {split_text} for seed 0); "
        "no subsampling. Shades of Gray colour constancy (p = 6) and the paper's online augmentation, as in the paper.",
        f"- Every setup ran {' or '.join(map(str, per_cell))} times (splits x seeds). Report with the paper's "
        f"figures beside ours: `{report}` (`sampleweight report {args.out} --paper --baseline {BASELINE}`).",
        "",
        "| setting | the paper | here |",
        "|---|---|---|",
        f"| model | CBAM on VGG16 (ImageNet-pretrained) | CBAM on timm `{args.backbone}`, randomly initialised |",
        f"| image size | 299 | {args.image_size} |",
        f"| epochs | 150 | {args.epochs} (lr / 10 at 50 % and 75 %, as in the paper) |",
        f"| batch size M | 20 | {args.batch_size} |",
        f"| ADAM learning rate | 1e-5 (fine-tuning) | {args.lr:g} (training from scratch) |",
        f"| SGD learning rate | 1e-4 (fine-tuning) | {args.sgd_lr:g} (training from scratch) |",
        f"| losses | CEL, FL | {', '.join(dict.fromkeys(c.loss for c in adam.cells))} |",
        f"| splits x seeds | 2 x 1 | {len(args.splits.split(','))} x {len(args.seeds.split(','))} |",
        *_long_tail_rows(adam),
        "",
        "## Results under ADAM (the paper's Table 2)",
        "",
        "Percent on the validation side: mean ± standard deviation (min-max) over a setup's runs; `paper`: Table 2.",
        *_long_tail_legend(adam),
        "",
        markdown_table(adam, paper=True),
        "",
        *_recall_table(adam),
        *_comparisons(adam),
    ]
    if sgd is not None:
        lines += _weight_scale_section(args, sgd)
    lines += [
        "",
        "## Which findings hold at this scale",
        "",
        "Each claim is tested on the same validation images: setup A minus setup B per split and seed, pooled by a",
        "two-level paired bootstrap (the split/seed pairs, then the images of each, stratified by class;",
        f"{args.bootstrap:,} resamples), in percentage points with the 95 % interval and p after Holm's correction",
        "over all the claims of this table. A finding **holds** when each of its claims is significant (p < 0.05)",
        "in the claimed direction, **does not hold** when one is significant against it; otherwise it is not",
        "significant here (with whether the direction agrees). The paper's findings come first, then those of the",
        "long-tail literature (its published figure in the second column); where no direction is claimed, the",
        "verdict names the setup that is significantly higher, if any.",
        "",
        "| finding | the paper (or the source) | here (A - B, [95 % interval], p) | verdict |",
        "|---|---|---|---|",
    ]
    deferred = args.epochs - deferred_start_epoch(args.epochs, None, None)  # DRS/DRW's epochs after the switch
    tested = findings(tables, resamples=args.bootstrap, deferred_epochs=deferred)
    lines += [f"| {f.claim} | {f.paper} | {f.ours} | **{f.verdict}** |" for f in tested]
    lines += [
        "",
        f"Not tested here: {untested}. Caveats: a tiny randomly initialised backbone at {args.image_size} px",
        f"after {args.epochs} epochs is far from the paper's ImageNet-pretrained VGG16 at 299 px after 150 epochs,",
        "so the absolute figures are far below the paper's; SPL and OHEM follow the paper's pacing (Eq. 9) over",
        "the epochs run here, so their curriculum is compressed into those few epochs; DRW and DRS defer their",
        f"rebalancing to 80 % of training, here to the epochs from {deferred_start_epoch(args.epochs, None, None)}",
        "(0-based) on; LDAM's s = 30 assumes a normalised classifier (Cao et al.), ours is a plain linear layer.",
        "For the full-scale recipe see [reproduction-gpu-recipe.md](reproduction-gpu-recipe.md).",
        "",
    ]
    return "\n".join(lines)


def _long_tail_rows(table: ResultTable) -> list[str]:
    """Rows of the settings table for the setups beyond the paper, when the table has any."""
    beyond = [cell for cell in table.cells if cell.loss not in ("ce", "focal") or cell.weighting not in
              ("none", "cb", "es", "spl", "ohem") or cell.sampler != "instance"]  # fmt: skip
    if not beyond:
        return []
    return [f"| beyond the paper | – | {', '.join(f'`{cell.name}`' for cell in beyond)} (docs/long-tail.md) |"]


def _long_tail_legend(table: ResultTable) -> list[str]:
    names = {cell.name for cell in table.cells}
    notes = []
    if any("sampler=" in name for name in names):
        notes.append("`sampler=...`: re-sampling instead of re-weighting (docs/sampling.md), CE, no weighting")
    if "ce-drw" in names:
        notes.append("`drw`: ES class weights from 80 % of training on (Cao et al. 2019)")
    if any(name.startswith(("logit_adjusted", "balanced_softmax", "ldam")) for name in names):
        notes.append("`logit_adjusted`, `balanced_softmax`, `ldam` with `drw` (LDAM-DRW): the losses of "
                     "docs/long-tail.md, published defaults (LDAM's s = 30 on the plain linear head)")  # fmt: skip
    if any("+crt" in name for name in names):
        notes.append("`none+crt`: the `none` runs with their classifier re-trained on class-balanced batches for "
                     "10 % of their epochs, the network frozen (`sampleweight retrain --method crt`)")  # fmt: skip
    return ["Beyond the paper: " + "; ".join(notes) + f". Paired differences are to `{BASELINE}`."] if notes else []


def _recall_table(table: ResultTable) -> list[str]:
    lines = [
        "Per-class recall (%, mean over the runs):",
        "",
        "| loss | weighting | " + " | ".join(table.classes) + " |",
        "|---|---|" + "---:|" * len(table.classes),
    ]
    for cell in table.cells:
        lines.append(f"| {cell.loss} | {cell.label} | " + " | ".join(f"{100 * r:.1f}" for r in cell.recall) + " |")
    return lines


def _comparisons(table: ResultTable) -> list[str]:
    if not table.comparisons:
        return []
    return [
        "",
        f"Paired differences to `{BASELINE}` on the same images, in percentage points: the mean over the",
        "split/seed pairs, [95 % interval], p after Holm's correction over the table's comparisons; **bold**:",
        "significant.",
        "",
        markdown_comparisons(table),
    ]


def _weight_scale_section(args: argparse.Namespace, table: ResultTable) -> list[str]:
    split = int(args.splits.split(",")[0])
    scales = weight_scales(args.data, split)
    scale_rows = [f"| {name} | {value:.3g} |" for name, value in scales.items()]
    return [
        "",
        "## Under SGD, and what the weight scale does (the paper's Table 4)",
        "",
        "Under SGD a class weighter's mean weight per sample multiplies the effective learning rate (ADAM's update",
        "is nearly scale-free; `docs/weighting.md`, section Scale). On the training side of split "
        f"{split} (seed 0) the mean weight per sample is:",
        "",
        "| weighting | mean weight per sample |",
        "|---|---:|",
        *scale_rows,
        "",
        f"so under SGD the paper-literal ES (Eq. 8, `normalize=none`) trains with {scales['es']:.2g} times the",
        f"learning rate of `none` and CB with {scales['cb']:.3g} times; ES with `normalize=classes` (Cui et al.'s",
        f"convention) with {scales['es-normalize=classes']:.2g} times.",
        "",
        markdown_table(table, paper=True),
        "",
        *_recall_table(table),
        *_comparisons(table),
    ]


def _command() -> str:
    niceness = os.nice(0)
    prefix = f"nice -n {niceness} " if niceness else ""
    script = Path(sys.argv[0])
    shown = script.relative_to(ROOT) if script.is_absolute() and ROOT in script.parents else script
    return prefix + shlex.join(["python", str(shown), *sys.argv[1:]])


def _add_timing(
    out: Path, seconds: float, trained: int, commit: str = "", args: argparse.Namespace | None = None
) -> dict:
    """Accumulate the wall time of the invocations that trained (a resumed reproduction adds up).

    Only an invocation that reaches the end is recorded: the runs an interrupted one finished are then
    counted by none (`_timing_text` says so).
    """
    path = out / TIMING_FILE
    timing = json.loads(path.read_text()) if path.is_file() else {"wall_seconds": 0.0, "invocations": []}
    if trained:
        timing["wall_seconds"] += seconds
        invocation = {"seconds": seconds, "runs_trained": trained, "commit": commit.strip(" ()")}
        if args is not None:
            invocation.update(processes=args.processes, threads=args.threads)
        timing["invocations"].append(invocation)
        path.write_text(json.dumps(timing, indent=2) + "\n")
    return timing


def _timing_text(timing: dict, total: int) -> str:
    """The wall-time line: what the recorded invocations took, and how many runs an interrupted one trained."""
    invocations = timing["invocations"]
    counted = sum(i["runs_trained"] for i in invocations)
    commits = sorted({i.get("commit") or "unknown" for i in invocations})
    settings = sorted(
        {f"{i.get('processes', '?')} at a time, {i.get('threads', '?')} thread(s) each" for i in invocations}
    )
    text = (
        f"- Wall time of the grids: **{timing['wall_seconds'] / 60:.1f} min** for the {counted} runs and stages "
        f"trained by {len(invocations)} invocation(s) that ran to the end ({'; '.join(settings)}; code: "
        f"{', '.join(commits)})"
    )
    if counted < total:
        text += (
            f"; the other {total - counted} were trained (or begun, and resumed) by an invocation that was "
            "interrupted, whose wall time is not counted"
        )
    return text


def _commit(doc: Path | None = None) -> str:
    """`` (commit abc1234)`` of the checkout this runs from, with ``+changes`` when it has uncommitted ones
    (other than ``doc``, the page this script rewrites)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        ignored = (
            [f":(exclude){Path(doc).resolve().relative_to(ROOT)}"]
            if doc and ROOT in Path(doc).resolve().parents
            else []
        )
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ".", *ignored], cwd=ROOT, capture_output=True,
                               text=True)  # fmt: skip
    except OSError:  # no git here
        return ""
    if head.returncode:
        return ""
    return f" (commit {head.stdout.strip()}{'+changes' if dirty.stdout.strip() else ''})"


def _split_sizes(data: str, splits: list[int]) -> dict[int, tuple[int, int]]:
    records = read_dataset(data)
    return {s: tuple(len(side) for side in split_indices(records, s, 0)) for s in splits}


def _epochs(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    main()
