from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from billing import limits, views, webhooks

app_name = "billing"
urlpatterns = [
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/login/", limits.LimitedLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password-reset/",
        limits.LimitedPasswordResetView.as_view(
            success_url=reverse_lazy("billing:password_reset_done"),
            email_template_name="registration/password_reset_email.html",
        ),
        name="password_reset",
    ),
    path(
        "accounts/password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "accounts/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            success_url=reverse_lazy("billing:password_reset_complete")
        ),
        name="password_reset_confirm",
    ),
    path(
        "accounts/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("accounts/verify/<str:token>/", views.verify_email, name="verify_email"),
    path("account/verify-email/", views.verify_email_resend, name="verify_email_resend"),
    path("account/", views.dashboard, name="dashboard"),
    path("account/password/", views.password_change_view, name="password_change"),
    path("account/delete/", views.account_delete_view, name="account_delete"),
    path("account/keys/", views.api_key_create_view, name="api_key_create"),
    path("account/keys/<int:key_id>/revoke/", views.api_key_revoke_view, name="api_key_revoke"),
    path("account/provider-keys/", views.provider_key_save_view, name="provider_key_save"),
    path(
        "account/provider-keys/<int:key_id>/delete/",
        views.provider_key_delete_view,
        name="provider_key_delete",
    ),
    path(
        "account/webhook-secret/rotate/",
        views.webhook_secret_rotate_view,
        name="webhook_secret_rotate",
    ),
    path("account/top-ups/", views.top_up_start_view, name="top_up_start"),
    path(
        "account/top-ups/<uuid:top_up_id>/receipt",
        views.top_up_receipt_view,
        name="top_up_receipt",
    ),
    path("account/usage.csv", views.usage_csv, name="usage_csv"),
    path("billing/stripe/webhook", webhooks.stripe_webhook, name="stripe_webhook"),
]
