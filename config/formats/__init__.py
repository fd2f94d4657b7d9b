"""Locale format overrides (``settings.FORMAT_MODULE_PATH``): the admin writes dates as the
site does ("7 Dec 2026 01:57"), not as Django's English default ("Dec. 7, 2026, 1:57 a.m.")."""
