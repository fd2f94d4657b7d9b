"""``manage.py make_checkpoints --out DIR``: random-weight checkpoints of the published
detector architectures, one folder per family, for development where real weights are absent.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from playground.runtime.checkpoints import FAMILIES, PUBLISHED, build_checkpoint


class Command(BaseCommand):
    help = "Write random-weight detector checkpoints (configs of the published models)."

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="Folder; one subfolder per family.")
        parser.add_argument(
            "--families",
            default=",".join(FAMILIES),
            help=f"Comma-separated, from: {', '.join(FAMILIES)}.",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--library-init",
            action="store_true",
            help="Keep transformers' initialisation (every query then predicts the same box).",
        )

    def handle(self, *args, out: str, families: str, seed: int, library_init: bool, **options):
        chosen = [f.strip() for f in families.split(",") if f.strip()]
        unknown = [f for f in chosen if f not in FAMILIES]
        if unknown or not chosen:
            raise CommandError(f"Unknown families {unknown}; choose from {', '.join(FAMILIES)}.")
        for family in chosen:
            folder = build_checkpoint(
                family, Path(out) / family, seed=seed, spread=not library_init
            )
            self.stdout.write(f"{family}: {folder} (random weights, {PUBLISHED[family]} layout)")
