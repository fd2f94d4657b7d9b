from __future__ import annotations

from django.core.management.base import BaseCommand

from catalog.seed import SEED
from catalog.services import catalog_load_seed


class Command(BaseCommand):
    help = "Load the seed catalogue. Idempotent; --update rewrites seeded cards from the seed."

    def add_arguments(self, parser):
        parser.add_argument(
            "--update",
            action="store_true",
            help="Overwrite existing seeded cards with the seed's values (keeps price history).",
        )

    def handle(self, *args, update: bool = False, **options):
        loaded = catalog_load_seed(seed=SEED, update=update)
        rewritten = loaded.pop("rewritten")
        summary = ", ".join(f"{n} {name}" for name, n in loaded.items())
        self.stdout.write(f"Seed catalogue loaded ({summary} created).")
        if rewritten:  # --update: what an operator's edits were replaced on
            self.stdout.write(
                f"Rewritten from the seed ({len(rewritten)} cards, price changes recorded "
                f"in their history): {', '.join(rewritten)}."
            )
