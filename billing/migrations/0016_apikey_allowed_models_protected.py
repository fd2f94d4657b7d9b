"""An API key's allow-list through a model of its own, whose card is PROTECTed (billing's
ApiKeyModel): deleting the only card a key was restricted to made it an unrestricted key.

State only: the table Django made for the plain many-to-many (``billing_apikey_allowed_models``:
``id``, ``apikey_id``, ``modelcard_id``, unique together) is the new model's, unchanged, and
Django enforces PROTECT itself, not the database. So nothing runs on the database, the
previous release goes on reading and writing the same rows during a rolling deploy, and
rolling back is ``migrate billing 0015``.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0015_charge_key_month_and_credit_kinds_indexes"),
        ("catalog", "0011_model_id_alias"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ApiKeyModel",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "apikey",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE, to="billing.apikey"
                            ),
                        ),
                        (
                            "modelcard",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                to="catalog.modelcard",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "API key's allowed model",
                        "db_table": "billing_apikey_allowed_models",
                        "unique_together": {("apikey", "modelcard")},
                    },
                ),
                migrations.AlterField(
                    model_name="apikey",
                    name="allowed_models",
                    field=models.ManyToManyField(
                        blank=True, help_text="Empty: every model.", through="billing.ApiKeyModel",
                        to="catalog.modelcard",
                    ),
                ),
            ],
            database_operations=[],
        )
    ]
