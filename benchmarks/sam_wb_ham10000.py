"""Study: sam, imbsam and weight balancing against ce-none on HAM10000 at the CPU reproduction scale.

Trains nothing: it reads the run directories that these commands wrote (one training process at a time; the
settings of ``docs/reproduction-cpu-results.md``: CBAM on timm ``test_resnet``, 48 px, 5 epochs, batch 32,
lr 1e-3, lesion-grouped splits 0 and 1), and compares every setup with ``ce-none`` (ADAM) on the same validation
images: the paired bootstrap of ``sampleweight report --baseline``, pooled over the (split, seed) pairs, with
Holm's correction over all differences of the page. ``report`` itself compares within one optimizer's table; here
the optimizer is what differs, so the pairs are made across tables.

    C="--data HAM10000 --models cbam_vgg16 --backbone test_resnet --no-pretrained --image-size 48 --epochs 5 \\
       --batch-size 32 --lr 1e-3 --splits 0,1 --quiet --no-report"
    sampleweight grid $C --seeds 0,1 --losses ce --weighters none --optimizers adam --retrain wb --out RUNS
    sampleweight grid $C --seeds 0 --losses ce --weighters none --optimizers sam,imbsam \\
                     --optimizer-option base=adam --out RUNS
    echo 'weight_decay = 5e-4' > wd.toml
    sampleweight grid $C --seeds 0 --config wd.toml --losses ce --weighters none --optimizers adam --retrain wb \\
                     --out RUNS/wd5e-4
    python benchmarks/sam_wb_ham10000.py RUNS
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sampleweight.engine.config import default_name
from sampleweight.studies.statistics import PairedBootstrap, Predictions, describe, holm_family

METRICS = ("bacc", "acc", "mf1", "mpr")
TAIL = ("AKIEC", "VASC", "DF")


def setups(folder: Path) -> dict[str, dict[tuple[int, int], Path]]:
    """Finished runs by setup name (``ce-none``, ``ce-none-sam``, ``ce-none+wb``, ``ce-none-wd0.0005+wb``,
    ``ce-none-class_balanced``, ...) and (split, seed)."""
    found: dict[str, dict[tuple[int, int], Path]] = {}
    for final in sorted(folder.rglob("metrics.json")):
        run = final.parent
        config = json.loads((run / "config.json").read_text())
        stage = config.get("retrain", {}).get("method")
        name = f"{config['loss']}-{'+'.join(config['weighters'])}"
        if config["optimizer"] != default_name("optimizers"):
            name += f"-{config['optimizer']}"
        if config.get("sampler", default_name("samplers")) != default_name("samplers"):
            name += f"-{config['sampler']}"
        if config.get("weight_decay"):
            name += f"-wd{config['weight_decay']:g}"
        if stage:
            name += f"+{stage}"
        found.setdefault(name, {})[(config["split"], config["seed"])] = run
    return found


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args(argv)
    runs = setups(args.folder)
    baseline = runs.pop("ce-none")
    predictions = {name: {key: Predictions.read(path / "predictions.csv") for key, path in group.items()}
                   for name, group in [("ce-none", baseline), *runs.items()]}  # fmt: skip
    classes = next(iter(predictions["ce-none"].values())).classes
    tail = [f"recall:{c}" for c in TAIL if c in classes]
    bootstrap = PairedBootstrap((*METRICS, *tail), resamples=args.resamples)
    lines = ["| setup | n | " + " | ".join(m.upper() for m in METRICS) + " | tail recall (" + ", ".join(TAIL) + ") |",
             "|---|---:|" + "---:|" * (len(METRICS) + 1)]  # fmt: skip
    comparisons = {}
    for name, group in predictions.items():
        finals = [json.loads((path / "metrics.json").read_text()) for path in (baseline if name == "ce-none"
                  else runs[name]).values()]  # fmt: skip
        spreads = [describe([100 * f[m] for f in finals]) for m in METRICS]
        cells = [f"{spread.mean:.1f} ± {spread.sd:.1f}" for spread in spreads]
        recalls = [np.mean([100 * f["per_class"][c]["recall"] for f in finals]) for c in TAIL]
        recall_text = ", ".join(f"{r:.1f}" for r in recalls)
        lines.append(f"| {name} | {len(finals)} | " + " | ".join(cells) + f" | {recall_text} |")
        if name != "ce-none":
            comparisons[name] = bootstrap.compare(group, predictions["ce-none"])
    headline = [d for c in comparisons.values() for d in c.pooled if d.metric in METRICS]
    adjusted = iter(holm_family(headline))
    out = ["", "Paired differences to ce-none (percentage points, pooled over the pairs; 95 % BCa interval). BAcc, "
           "Acc, mF1 and mPR: p after Holm's correction over all of them on this page, bold below 0.05; the tail "
           "recalls: raw p, descriptive.", "", "| setup | pairs | " + " | ".join(bootstrap.metrics) + " |",
           "|---|---:|" + "---:|" * len(bootstrap.metrics)]  # fmt: skip
    for name, comparison in comparisons.items():
        cells = []
        for d in comparison.pooled:
            p = next(adjusted).p_holm if d.metric in METRICS else d.p
            mark = "**" if d.metric in METRICS and p is not None and p < 0.05 else ""
            interval = f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
            cells.append(f"{mark}{100 * d.estimate:+.1f} {interval} p={p:.3f}{mark}")
        out.append(f"| {name} | {comparison.pooled[0].pairs} | " + " | ".join(cells) + " |")
    text = "\n".join(lines + out)
    print(text)
    return text


if __name__ == "__main__":
    main()
