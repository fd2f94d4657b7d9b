"""System accounts stop caching their balance (NULL): it is the sum of their entries."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0003_move_pooled_holds"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name='ledgeraccount',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('balance__isnull', False), ('user__isnull', False)), models.Q(('balance__isnull', True), ('user__isnull', True)), _connector='OR'), name='balance_cached_for_user_accounts'),
        ),
    ]
