"""Admin search that reads an index when the term is a key.

Django's admin search ORs every search field together: one field with no index makes the
whole search read the table, though the term pasted (a job id from a log line, a charge's
job, a ledger transaction's idempotency key) names one row of a unique index. At a year of
data (1.5 million jobs) a job id took 4.2-4.7 s to find that way.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.contrib.admin.views.main import SEARCH_VAR, ChangeList
from django.core.exceptions import ValidationError
from django.utils import timezone


class KeyFirstSearchMixin:
    """``key_search_fields``: indexed fields (unique ones, or a primary key) tried first,
    each alone and exactly, with the whole term; the first that finds rows answers. Any
    other term, or one that finds nothing there, is searched as the admin always does."""

    key_search_fields: tuple[str, ...] = ()

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if term and not any(c.isspace() for c in term):
            for field in self.key_search_fields:
                try:
                    found = queryset.filter(**{field: term})
                    if found.exists():
                        return found, False
                except (ValidationError, ValueError):
                    continue  # not a value of that field (not a UUID, say)
        return super().get_search_results(request, queryset, search_term)


class CreatedWithin(admin.SimpleListFilter):
    """A list's time window: the last 7 days unless the operator picks another ("All
    time" included). For the lists of rows written on every call (jobs, charges, ledger
    transactions), which have no B-tree on ``created_at`` (an entry per row on the hot
    path) but a BRIN index (PostgreSQL; playground/0020, billing/0017): newest first over
    a week is the week's rows read (~30,000 at a year of 1.5 million) and sorted, where
    with no window every view read and sorted the whole table (2.5-3.6 s at a year of
    data). "All time" still does that.

    A search looks at all time unless a window is picked: a job id or an idempotency key
    pasted from a log line names a row of any age (and is found by its unique index)."""

    title = "created"
    parameter_name = "created"
    field = "created_at"
    default = "7d"
    windows = {
        "24h": ("Last 24 hours", timedelta(hours=24)),
        "7d": ("Last 7 days", timedelta(days=7)),
        "30d": ("Last 30 days", timedelta(days=30)),
        "all": ("All time", None),
    }

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in self.windows.items()]

    def value(self) -> str:
        picked = self.used_parameters.get(self.parameter_name)
        if picked in self.windows:
            return picked
        return "all" if self.request.GET.get(SEARCH_VAR, "").strip() else self.default

    def queryset(self, request, queryset):
        window = self.windows[self.value()][1]
        if window is None:
            return queryset
        return queryset.filter(**{f"{self.field}__gte": timezone.now() - window})

    def choices(self, changelist):
        # No "All" entry meaning "no filter": none is the default window; each choice
        # names its window, so a link keeps it whatever else changes (a search).
        for key, label in self.lookup_choices:
            yield {
                "selected": self.value() == key,
                "query_string": changelist.get_query_string({self.parameter_name: key}),
                "display": label,
            }


class PageThenRelated(ChangeList):
    """A change list whose related rows are read for its page, after it is sorted.

    ``list_select_related`` joins them in the list's query, and PostgreSQL joins before it
    sorts (it cannot carry the LIMIT below a join): every row of the window (of the whole
    table for "All time") joined, then sorted. At a year of data "All time" took 4.1 s for
    charges (five joins), 0.45 s without them. Here the page is read from the table alone
    and its related rows come with it (``list_prefetch_related``): one query per relation,
    however many rows the page has."""

    def apply_select_related(self, qs):
        return qs.prefetch_related(*self.model_admin.list_prefetch_related)


class RelatedAfterThePageMixin:
    list_prefetch_related: tuple[str, ...] = ()

    def get_changelist(self, request, **kwargs):
        return PageThenRelated
