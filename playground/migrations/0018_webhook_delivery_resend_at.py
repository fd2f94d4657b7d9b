"""``WebhookDelivery.resend_at``: when a delivery's message could not be sent (the broker
away), the time it was due; the reaper's next sweep sends it (``webhooks_sweep``).

A nullable column without a default: added at once on PostgreSQL (no table rewrite), and
the previous release, still running during a rolling deploy, inserts and updates
deliveries without naming it. No index: the sweep reads pending deliveries, which the
status index already finds.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("playground", "0017_job_owner_created_and_retention_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookdelivery",
            name="resend_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
