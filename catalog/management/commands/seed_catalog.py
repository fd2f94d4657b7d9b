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
        created = catalog_load_seed(seed=SEED, update=update)
        summary = ", ".join(f"{n} {name}" for name, n in created.items())
        self.stdout.write(f"Seed catalogue loaded ({summary} created).")
