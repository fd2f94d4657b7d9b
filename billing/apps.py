from __future__ import annotations

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from django.conf import settings
        from django.db.models.signals import post_save

        from billing.signals import grant_signup_credit

        post_save.connect(
            grant_signup_credit,
            sender=settings.AUTH_USER_MODEL,
            dispatch_uid="billing.signup_credit",
        )
