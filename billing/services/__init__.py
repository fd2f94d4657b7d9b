"""Billing services: ``ledger`` moves money; the others say why."""
