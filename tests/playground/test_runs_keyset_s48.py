"""My runs pages by keyset, not OFFSET (session 48).

A load study with 420,000 runs of one account found each deeper My runs page reading and
throwing away every run before it (``OFFSET``), plus a count of them all: page 20,000 took
2.5 s. A page now starts at a cursor, the run it follows (``?before=``, "Older") or precedes
(``?after=``, "Newer"), and reads ``job_owner_created`` from there: runs made meanwhile
neither repeat nor skip one. A screen-reader probe also found the permalink links named
by their date alone; each now says which run it opens.
"""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import dateformat, timezone

from playground import runs
from playground.models import Job, JobStatus
from tests import factories

pytestmark = pytest.mark.django_db
on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="the planner's plan")

PER_PAGE = runs.RUNS_PER_PAGE
START = datetime(2026, 12, 3, 14, 2, 5, 123456, tzinfo=UTC)


@pytest.fixture
def card(db):
    card = factories.card(display_name="DETR ResNet-50")
    factories.route(card=card)
    return card


@pytest.fixture
def owner(db):
    return factories.user(username="runner")


def make_runs(card, n, *, at=None, step=timedelta(minutes=1), **fields) -> list[Job]:
    """``n`` runs, oldest first, ``step`` apart from ``at`` (by default a minute after the
    newest run so far; ``step=timedelta(0)``: all made in the same microsecond)."""
    if at is None:
        newest = Job.objects.order_by("-created_at").first()
        at = newest.created_at + timedelta(minutes=1) if newest else START
    values = {
        "card": card,
        "image_name": "run.png",
        "image_sha256": "0" * 64,
        "image_bytes": 100,
        "original_width": 64,
        "original_height": 48,
        "width": 64,
        "height": 48,
        "queue": "cpu",
    } | fields
    made = [Job.objects.create(**values) for _ in range(n)]
    for i, job in enumerate(made):  # auto_now_add: set afterwards
        job.created_at = at + i * step
        Job.objects.filter(pk=job.pk).update(created_at=job.created_at)
    return made


def listed(body: str) -> list[str]:
    return re.findall(r'data-run="([0-9a-f-]{36})"', body)


def link(body: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', body)
    return html.unescape(found.group(1)) if found else None


def newest_first(jobs) -> list[str]:
    return [str(j.pk) for j in sorted(jobs, key=lambda j: (j.created_at, j.pk), reverse=True)]


@pytest.mark.parametrize("step", [timedelta(minutes=1), timedelta(0)], ids=["apart", "same time"])
def test_older_pages_neither_repeat_nor_skip_a_run_while_runs_are_made(client, card, owner, step):
    """With ``?page=N`` each run made meanwhile pushed the list down by one: the next page
    repeated the previous page's last run. Runs made in one microsecond are told apart by id."""
    old = make_runs(card, 2 * PER_PAGE + 5, step=step, owner=owner)
    client.force_login(owner)

    first = client.get("/runs").content.decode()
    seen = listed(first)
    assert seen == newest_first(old)[:PER_PAGE]
    assert link(first, "prev") is None
    made_meanwhile = make_runs(card, 5, owner=owner)
    second = client.get(link(first, "next")).content.decode()
    seen += listed(second)
    make_runs(card, 3, owner=owner)
    third = client.get(link(second, "next")).content.decode()
    seen += listed(third)

    assert seen == newest_first(old)  # each old run once, in order
    assert link(third, "next") is None and len(listed(third)) == 5
    # "Older" names the page's last run, readable: ?before=<created_at UTC>,<id>.
    last = Job.objects.get(pk=listed(first)[-1])
    assert link(first, "next") == (
        f"/runs?before={last.created_at.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ},{last.pk}"
    )

    # Back up: "Newer" gives the pages as they were read, then the newest runs.
    back = client.get(link(third, "prev")).content.decode()
    assert listed(back) == listed(second)
    back = client.get(link(back, "prev")).content.decode()
    assert listed(back) == listed(first)  # not shifted by the 8 runs made since
    top = client.get(link(back, "prev")).content.decode()
    assert listed(top) == newest_first(Job.objects.all())[:PER_PAGE]
    assert set(listed(top)) >= {str(j.pk) for j in made_meanwhile}
    assert link(top, "prev") is None and link(top, "next")


def test_a_list_of_whole_pages_ends_without_an_empty_page(client, card, owner):
    """Each page reads one run more than it shows: the last of 40 runs has no "Older"."""
    make_runs(card, 2 * PER_PAGE, owner=owner)
    client.force_login(owner)
    first = client.get("/runs").content.decode()
    assert link(first, "next").startswith("/runs?before=")
    second = client.get(link(first, "next")).content.decode()
    assert len(listed(second)) == PER_PAGE
    assert link(second, "next") is None and link(second, "prev").startswith("/runs?after=")
    assert 'class="pager"' in second


def test_only_the_viewers_runs_are_paged_and_a_session_pages_its_tries(client, card, owner):
    """Someone else's runs, made between the viewer's, never show on the viewer's pages; an
    anonymous session's tries page by the same cursor."""
    other = factories.user()
    mine = []
    for _ in range(PER_PAGE + 3):
        mine += make_runs(card, 1, owner=owner)
        make_runs(card, 1, owner=other)
    client.force_login(owner)
    first = client.get("/runs").content.decode()
    second = client.get(link(first, "next")).content.decode()
    assert listed(first) + listed(second) == newest_first(mine)

    client.logout()
    client.get(f"/models/{card.model_id}/try")  # a session
    client.session.save()
    tries = make_runs(card, PER_PAGE + 2, session_key=client.session.session_key)
    make_runs(card, 2, session_key="someone-else")
    first = client.get("/runs").content.decode()
    second = client.get(link(first, "next")).content.decode()
    assert listed(first) + listed(second) == newest_first(tries)


def test_the_lists_other_query_parameters_travel_with_the_cursor(client, card, owner):
    """The page has no filter of its own yet; whatever else its address carries (a filter
    added later, a campaign tag) stays on its "Newer" and "Older" links."""
    make_runs(card, 2 * PER_PAGE + 1, owner=owner)
    client.force_login(owner)
    first = client.get("/runs?ref=mail&tag=a&tag=b").content.decode()
    older = link(first, "next")
    assert older.startswith("/runs?ref=mail&tag=a&tag=b&before=")
    second = client.get(older).content.decode()
    assert link(second, "prev").startswith("/runs?ref=mail&tag=a&tag=b&after=")
    assert link(second, "next").startswith("/runs?ref=mail&tag=a&tag=b&before=")


@pytest.mark.parametrize(
    "query",
    [
        "before=yesterday",
        "before=",
        "after=",
        "before=2026-12-03T14:02:05.123456Z",  # no id
        "before=2026-12-03T14:02:05.123456Z,not-a-uuid",
        "before=2026-13-03T14:02:05.123456Z,00000000-0000-0000-0000-000000000000",  # month 13
        "before=2026-12-03T14:02:05Z,00000000-0000-0000-0000-000000000000",  # no microseconds
        "before=2026-12-03 14:02:05.123456,00000000-0000-0000-0000-000000000000",
        "before=2026-12-03T14:02:05.123456Z,00000000-0000-0000-0000-000000000000,9",
        "before=%FF%FE",
        "before=" + "9" * 5000,
        "before=2026-12-03T14:02:05.123456Z,00000000-0000-0000-0000-000000000000"
        "&after=2026-12-03T14:02:05.123456Z,00000000-0000-0000-0000-000000000000",
        "before=2026-12-03T14:02:05.123456Z,00000000-0000-0000-0000-000000000000"
        "&before=2026-12-03T14:02:05.123456Z,00000000-0000-0000-0000-000000000000",
    ],
)
def test_a_malformed_cursor_goes_to_the_first_page_and_says_so(client, card, owner, query):
    make_runs(card, PER_PAGE + 1, owner=owner)
    client.force_login(owner)
    response = client.get(f"/runs?ref=mail&{query}")
    assert response.status_code == 302
    assert response["Location"] == "/runs?ref=mail"
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert html.escape(runs.BAD_CURSOR) in page.content.decode()
    assert listed(page.content.decode()) == newest_first(Job.objects.all())[:PER_PAGE]


def test_a_cursor_past_every_run_goes_to_the_first_page(client, card, owner):
    """Well formed, but nothing older (the runs after it deleted, or made up): the first page
    rather than an empty list that reads "No runs yet"."""
    make_runs(card, 3, owner=owner)
    client.force_login(owner)
    response = client.get(f"/runs?before=2000-01-01T00:00:00.000000Z,{uuid.uuid4()}")
    assert response.status_code == 302 and response["Location"] == "/runs"
    # One from the future: the newest runs, and nothing newer to link to.
    body = client.get(f"/runs?before=2999-01-01T00:00:00.000000Z,{uuid.uuid4()}")
    assert body.status_code == 200
    assert len(listed(body.content.decode())) == 3 and 'class="pager"' not in body.content.decode()


@pytest.mark.parametrize("page", ["1", "2", "500", "last", "-1", ""])
def test_old_page_number_links_go_to_the_first_page(client, card, owner, page):
    """``?page=N`` links (bookmarks, history) from before session 48 land on the newest runs:
    serving page N would be the OFFSET read again, and page N never held the same runs for
    long anyway (each new run moved every run one place down)."""
    make_runs(card, 2 * PER_PAGE, owner=owner)
    client.force_login(owner)
    response = client.get(f"/runs?page={page}&ref=mail")
    assert response.status_code == 302
    assert response["Location"] == "/runs?ref=mail"
    assert client.get("/runs?page=2").headers["Location"] == "/runs"
    assert "private" in response["Cache-Control"]


def test_each_permalink_link_is_named_by_model_status_and_date(client, card, owner):
    """A screen reader listing the page's links read "3 Dec 2026 14:02, 3 Dec 2026 14:01, ...":
    each link's name now says which run it opens, and still ends with the date it shows."""
    done = make_runs(card, 1, owner=owner, status=JobStatus.SUCCEEDED, result=[])[0]
    failed = make_runs(card, 1, owner=owner, status=JobStatus.FAILED)[0]
    client.force_login(owner)
    body = client.get("/runs").content.decode()
    for job, status in ((done, "succeeded"), (failed, "failed")):
        row = body.split(f'data-run="{job.pk}"')[1].split("</tr>")[0]
        shown = dateformat.format(timezone.localtime(job.created_at), "j M Y H:i")
        anchor = re.search(r"<a ([^>]*)>([^<]*)</a>", row)
        attributes, text = anchor.groups()
        assert text == shown  # the visible link is as it was: the date
        assert f'href="/playground/jobs/{job.pk}"' in attributes
        # To the second: runs made in one minute have names of their own (session 48).
        said = dateformat.format(timezone.localtime(job.created_at), "j M Y H:i:s")
        assert f'aria-label="DETR ResNet-50 run, {status}, {said}"' in attributes
        assert said.startswith(shown)
    assert shown == "3 Dec 2026 14:03"  # the failed run, a minute after the first


def test_a_models_name_in_the_links_name_is_escaped(client, owner):
    card = factories.card(display_name='Tiny "YOLO" <v2>')
    factories.route(card=card)
    make_runs(card, 1, owner=owner)
    client.force_login(owner)
    body = client.get("/runs").content.decode()
    assert 'aria-label="Tiny &quot;YOLO&quot; &lt;v2&gt; run, queued, ' in body


# --- PostgreSQL: the plan -------------------------------------------------------------------
def plan_of(sql: str, params=()) -> str:
    """PostgreSQL's plan for ``sql`` with sequential scans disabled (a test's table is tiny:
    otherwise read whole whatever its indexes), as tests/playground/test_volume_reads.py."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@on_postgresql
def test_a_deep_page_reads_the_owners_index_from_its_cursor(client, card, owner):
    """A page after a cursor starts its index scan at the cursor (``created_at`` in the
    Index Cond), with no OFFSET, no count of the owner's runs and no sort: with ``?page=N``
    PostgreSQL read and discarded ``20 * (N - 1)`` entries and counted every run."""
    make_runs(card, 4 * PER_PAGE, owner=owner)
    client.force_login(owner)
    first = client.get("/runs").content.decode()
    second = client.get(link(first, "next")).content.decode()
    with CaptureQueriesContext(connection) as ctx:
        deep = client.get(link(second, "next")).content.decode()  # "Older"
        newer = client.get(link(deep, "prev")).content.decode()  # "Newer", not the top
    assert len(listed(deep)) == PER_PAGE and listed(newer) == listed(second)
    reads = [q["sql"] for q in ctx.captured_queries if 'FROM "playground_job"' in q["sql"]]
    assert reads and not [sql for sql in reads if "COUNT(" in sql or "OFFSET" in sql], reads
    for sql in reads:
        plan = plan_of(sql)
        scan = next(line for line in plan.splitlines() if " on playground_job" in line)
        assert "using job_owner_created on playground_job" in scan, plan
        cond = plan.split(scan, 1)[1].splitlines()[1]
        assert "Index Cond:" in cond and "owner_id =" in cond and "created_at" in cond, plan
        assert "Sort Key: playground_job" not in plan, plan
