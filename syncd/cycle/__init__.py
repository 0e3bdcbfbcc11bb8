"""One sync cycle: read → stage → plan → guard → record → apply → report.

- :mod:`syncd.cycle._engine`: :func:`run_cycle`, the only code that knows the order of things.
- :mod:`syncd.cycle._run`: what a cycle is asked (:class:`CycleOptions`), what it returns
  (:class:`CycleResult`) and who is told (:class:`CycleReporter`).
- :mod:`syncd.cycle._stage`: reading the source into the state's staging tables, in blocks.
- :mod:`syncd.cycle._candidates`: whom the planner looks at, found in SQL, and the create queue.
- :mod:`syncd.cycle._plan`: the pure planner and the safety guards.
- :mod:`syncd.cycle._route`: which mail domain each person's mailbox goes to
  (``hybridbox.domains``), a pure function.
- :mod:`syncd.cycle._provision`: applying the creates and renames through the intent journal;
  :mod:`~syncd.cycle._batch` (what a batch is made of), :mod:`~syncd.cycle._allocate` (a free
  address for each person), :mod:`~syncd.cycle._outcomes` (what each answer writes and logs),
  :mod:`~syncd.cycle._connect` (a checked client), :mod:`~syncd.cycle._crash` (test-only
  crash points).
- :mod:`syncd.cycle._adopt`: ``syncd adopt``, matching existing mailboxes to people once.

It sits above the source, the state, Hybridbox and the address rules, and knows each only by
its public face.
"""

from typing import TYPE_CHECKING

from syncd.cycle._engine import run_cycle, summary
from syncd.cycle._plan import Plan
from syncd.cycle._route import Router, router
from syncd.cycle._run import CycleOptions, CycleReporter, CycleResult, new_cycle_id

if TYPE_CHECKING:
    from syncd.cycle._adopt import adopt


def __getattr__(name: str) -> object:
    # `syncd adopt` loads httpx to list Hybridbox's mailboxes; a cycle with nothing to send never
    # does, so adopt is imported on first use.
    if name == "adopt":
        from syncd.cycle._adopt import adopt

        return adopt
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CycleOptions",
    "CycleReporter",
    "CycleResult",
    "Plan",
    "Router",
    "adopt",
    "new_cycle_id",
    "router",
    "run_cycle",
    "summary",
]
