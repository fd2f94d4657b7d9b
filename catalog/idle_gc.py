"""Python's cycle collector in a web process: run when it has no request in flight.

Every request leaves a few hundred objects in reference cycles that only the cycle
collector frees (counted with ``gc.DEBUG_SAVEALL`` over a run of inference calls and job
reads: ~430 per request, DRF's request with its parsers and renderer, Django's request with
its session and message storage, the model instances read, the disconnect listener's
``RequestAborted`` with its traceback, uvicorn's objects of each connection). With
CPython's thresholds (700, 10, 10) a young collection starts at whichever allocation
crosses 700: about once per inference call, in the middle of it (0.33 ms each on a 2-core
Xeon, a second-generation one of ~1.2 ms every tenth; ~0.4 ms per call in all). How much
there is to collect does not depend on when: with the threshold at 10,000 the same run
spent the same time collecting, in fewer, longer pauses.

So at the server's startup (``enable``, from the lifespan event):

- ``gc.freeze()``: what the process imported and built before serving (Django, DRF, the
  URL conf, the settings; ~150,000 objects) moves to the permanent generation, which no
  collection traverses again (a full collection took 47-110 ms at startup).
- The automatic young threshold goes up to ``IN_FLIGHT_THRESHOLD`` (2,000): a request
  adds ~600 new container objects (an inference call or a job read, counted at the end of
  each), so none starts a collection of its own, while under a load that never leaves the
  process idle the collector still runs every few requests, in pauses of ~0.7 ms, and
  memory stays bounded. (Session 32 measured a threshold of 50,000 for the pages: each
  collection then walks tens of thousands of objects out of the caches, and `/models`
  served fewer requests.)
- When the last request in flight ends, its response sent (``ServerStartup`` counts
  them), ``collect_if_due`` runs the collection CPython would have run by then by its own
  thresholds (none while fewer than 700 objects are new): the same work, done while nobody
  waits for this process, as Ruby's unicorn collects between requests ("out-of-band GC").

``disable`` (the lifespan's shutdown) puts back what ``enable`` changed, so a process that
served and goes on (a test) keeps Python's own collector.
"""

from __future__ import annotations

import gc

# CPython's default thresholds: a young collection after 700 new container objects, the
# second generation after 10 young collections, a full one after 10 of those.
YOUNG, MIDDLE, OLD = 700, 10, 10
# While requests are in flight: above what one request adds (~600), so that no request
# collects in its middle; low enough that a process never idle collects every few requests.
IN_FLIGHT_THRESHOLD = 2_000

_saved: tuple[int, int, int] | None = None


def enable() -> None:
    """Freeze what startup built; collect between requests (module docstring)."""
    global _saved
    if _saved is not None:
        return
    _saved = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(IN_FLIGHT_THRESHOLD, MIDDLE, OLD)


def disable() -> None:
    """Python's own thresholds again, and nothing frozen."""
    global _saved
    if _saved is None:
        return
    gc.set_threshold(*_saved)
    gc.unfreeze()
    _saved = None


def enabled() -> bool:
    return _saved is not None


def due(counts: tuple[int, int, int] | None = None) -> int | None:
    """The generation CPython's own thresholds would have collected by now, or None, by
    ``counts`` (default: ``gc.get_count()``, the collector's counts now)."""
    young, middle, old = counts or gc.get_count()
    if young < YOUNG:
        return None
    if middle >= MIDDLE:
        return 2 if old >= OLD else 1
    return 0


def collect_if_due() -> int | None:
    """Run the collection that is due, if any; the generation collected."""
    if _saved is None:
        return None
    generation = due()
    if generation is not None:
        gc.collect(generation)
    return generation
