"""``IdempotencyRecord.cached``: the key's call was a cache hit (x-use-cache) of another
call's job, so its replays answer as the hit did: ``X-Vitrine-Cache: hit`` and
``X-Vitrine-Cost: 0`` (before, a replay showed the job's own cost and ``miss``).

A boolean with a database default: added at once on PostgreSQL 11+ (no table rewrite), and
the previous release, still running during a rolling deploy, inserts records without
naming it. Rolling back is ``migrate playground 0018``.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("playground", "0018_webhook_delivery_resend_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="idempotencyrecord",
            name="cached",
            field=models.BooleanField(db_default=False, default=False),
        ),
    ]
