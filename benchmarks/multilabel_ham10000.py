"""The multilabel form of HAM10000 on real images: sigmoid heads over the ISIC 2018 label tree, compared, paired.

`--task multilabel` on HAM10000 trains one sigmoid logit per node of the paper's label tree (11 labels: melanocytic,
non_melanocytic, the 7 diagnoses, benign, malignant; `sampleweight.data.multilabel`). At the reproduction scale of
``docs/reproduction-cpu-results.md`` (``cbam_vgg16`` over a randomly initialised timm ``test_resnet``, 48 px,
5 epochs, batch 32, ADAM lr 1e-3, the lesion-grouped splits 0 and 1, seeds 0 and 1), each setup trains one run per
(split, seed):

- ``bce`` (the baseline), ``bce`` with ``es`` (per label: its positives and negatives weighted by their effective
  numbers), ``asl`` (Ridnik et al. 2021), ``db`` (distribution-balanced, Wu et al. 2020), and ``bce`` with the
  ``repeat_factor`` sampler (LVIS's rule: an image repeated by the rarest of its labels);
- and the 7-class softmax model (``ce``, no weighting), whose probability of a node is the sum of its diagnoses'
  probabilities (P(malignant) = P(BCC) + P(AKIEC)), scored on the same labels and validation images (the multilabel
  split is the multiclass one relabelled).

Then each setup minus ``bce`` on the mean over the 11 labels of ROC AUC, ISIC 2024's partial AUC above 80 % TPR and
average precision, paired on the same validation images and pooled over the four (split, seed) pairs
(``sampleweight report --baseline``'s statistics), Holm-corrected over the setups per metric; and each label's AUC.
Written to ``docs/reproduction-multilabel-results.md``.

One training process at a time (``sampleweight train`` in a subprocess with ``--threads`` threads); resumable: a
finished run is kept, an interrupted one resumed. From the repository root:

    nice -n 10 python benchmarks/multilabel_ham10000.py --data /path/to/HAM10000
    python benchmarks/multilabel_ham10000.py --report-only     # rewrite the page from the finished runs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchtools import DEFAULT_DATA

SETUPS: dict[str, list[str]] = {
    "bce": [],
    "bce+es": ["--weighter", "es"],
    "asl": ["--loss", "asl"],
    "db": ["--loss", "db"],
    "bce, repeat_factor sampler": ["--sampler", "repeat_factor"],
}
MULTICLASS = "7-class ce, node probabilities"
BASELINE = "bce"
ROOT = Path(__file__).resolve().parents[1]


def folder(setup: str) -> str:
    return setup.replace(" ", "_").replace(",", "").replace("=", "-").replace("+", "-")


def command(args: argparse.Namespace, setup: str, split: int, seed: int, out: Path) -> list[str]:
    shared = [
        "--data", str(args.data), "--model", "cbam_vgg16", "--backbone", "test_resnet", "--no-pretrained",
        "--image-size", str(args.image_size), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
        "--lr", str(args.lr), "--split", str(split), "--seed", str(seed), "--cache-dir", str(args.out / "cache"),
        "--quiet", "--out", str(out),
    ]  # fmt: skip
    task = [] if setup == MULTICLASS else ["--task", "multilabel", *SETUPS[setup]]
    return [sys.executable, "-m", "sampleweight", "train", *shared, *task]


def train_all(args: argparse.Namespace) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    for seed in args.seeds:  # both splits of the first seed first: a shorter study still spans the splits
        for split in args.splits:
            for setup in args.setups:
                out = args.out / folder(setup) / f"s{split}-seed{seed}"
                if (out / "metrics.json").is_file():
                    continue
                resume = ["--resume"] if (out / "checkpoint.pt").is_file() else ["--overwrite"]
                started = time.time()
                print(f"{setup} split {split} seed {seed}", flush=True)
                subprocess.run([*command(args, setup, split, seed, out), *resume], check=True, env=env)
                print(f"  {time.time() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "sampleweight-multilabel")
    parser.add_argument("--splits", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1])
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1])
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--setups", type=lambda s: s.split(";"), default=[*SETUPS, MULTICLASS],
                        help="which setups to train, ';'-separated (default: all)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--page", type=Path, default=ROOT / "docs" / "reproduction-multilabel-results.md")
    args = parser.parse_args()
    if not args.report_only:
        train_all(args)


if __name__ == "__main__":
    main()
