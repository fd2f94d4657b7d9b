from __future__ import annotations

from django.shortcuts import render

from catalog.models import ModelCard


def home(request):
    cards = (
        ModelCard.objects.published()
        .select_related("organisation", "task")
        .prefetch_related("routes")
    )
    return render(request, "catalog/home.html", {"cards": cards})
