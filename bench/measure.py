"""Run one command and print its wall time and peak RSS as JSON: a small, fresh wrapper.

    python -I -S bench/measure.py COMMAND [ARGS...]

Why a wrapper: Linux carries a process's RSS high-water mark across ``exec`` (the pre-exec image
counts), so a child forked straight from the big benchmark process would report the
benchmark's own memory as its peak. Forked from this stdlib-only wrapper (a few MB), the child's
``ru_maxrss`` is its own. ``wait4`` gives the rusage of exactly that child (and of anything it
waited for). The wall time covers the child's whole life, start-up included, and not the
wrapper's own start-up.

Output (one line on stdout): ``{"wall_s": ..., "rss_mb": ..., "exit_code": ...}``; the
command's own stdout and stderr go to this wrapper's stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: measure.py COMMAND [ARGS...]", file=sys.stderr)
        return 64
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: its stdout joins stderr, so ours stays one JSON line
        try:
            os.dup2(2, 1)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    result = {
        "wall_s": wall,
        "rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "exit_code": os.waitstatus_to_exitcode(status),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
