"""``manage.py make_checkpoints``: random-weight checkpoints of the published detector
architectures, for tests and for development where real weights are absent.

``--out DIR`` writes one folder per family. ``--weights-dir DIR`` lays them out where the
runtime looks for the catalogue's cards (``DIR/<org>/<name>/<revision>``), so that
``VITRINE_WEIGHTS_DIR=DIR make run`` runs every seeded model offline; the boxes of random
weights mean nothing (each config is marked ``vitrine_untrained``).
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from playground.runtime import CheckpointSpec
from playground.runtime.checkpoints import FAMILIES, PUBLISHED, build_checkpoint
from playground.runtime.weights import weights_path


class Command(BaseCommand):
    help = "Write random-weight detector checkpoints (configs of the published models)."

    def add_arguments(self, parser):
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--out", help="Folder; one subfolder per family.")
        where.add_argument(
            "--weights-dir",
            help="A VITRINE_WEIGHTS_DIR: one folder per catalogue card of each family.",
        )
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

    def handle(
        self, *args, out, weights_dir, families: str, seed: int, library_init: bool, **options
    ):
        chosen = [f.strip() for f in families.split(",") if f.strip()]
        unknown = [f for f in chosen if f not in FAMILIES]
        if unknown or not chosen:
            raise CommandError(f"Unknown families {unknown}; choose from {', '.join(FAMILIES)}.")
        for family in chosen:
            for folder in self._folders(family, out=out, weights_dir=weights_dir):
                build_checkpoint(family, folder, seed=seed, spread=not library_init)
                self.stdout.write(
                    f"{family}: {folder} (random weights, {PUBLISHED[family]} layout)"
                )

    def _folders(self, family: str, *, out, weights_dir) -> list[Path]:
        if out:
            return [Path(out) / family]
        from django.db import connection

        from catalog.models import ModelCard

        if ModelCard._meta.db_table not in connection.introspection.table_names():
            raise CommandError(
                "The database has no catalogue yet: run `manage.py migrate` and "
                "`manage.py seed_catalog` first (or write plain folders with --out)."
            )
        repo = PUBLISHED[family]
        revisions = set(
            ModelCard.objects.filter(checkpoint_repo=repo).values_list(
                "checkpoint_revision", flat=True
            )
        ) or {""}
        return [
            weights_path(Path(weights_dir), CheckpointSpec(repo=repo, revision=rev))
            for rev in sorted(revisions)
        ]
