"""``python -m sampleweight`` runs the command line (as ``torchrun -m sampleweight`` will)."""

from sampleweight.cli import main

main()
