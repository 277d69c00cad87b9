"""Forget the executed outputs of some book pages, so the next build runs them again.

    python book/uncache.py finetune.md [ssl.md ...]

A new run (an encoder, a classifier) changes what a page would print without changing the page, so
the build's execution cache cannot notice: the Makefile calls this for the pages that read the run,
and the other pages keep their cached outputs (the data chapter alone takes 12-15 minutes).
"""

from __future__ import annotations

import sys
from pathlib import Path

CACHE = Path(__file__).resolve().parent / "_build" / ".jupyter_cache"


def forget(pages: list[str], cache: Path = CACHE) -> list[str]:
    """Remove the cached outputs of ``pages`` (names like ``finetune.md``); returns those removed."""
    if not cache.is_dir():
        return []
    from jupyter_cache import get_cache

    store = get_cache(str(cache))
    removed = []
    for record in store.list_cache_records():
        if Path(record.uri).name in pages:
            store.remove_cache(record.pk)
            removed.append(Path(record.uri).name)
    return removed


if __name__ == "__main__":
    gone = forget(sys.argv[1:])
    print(f"book cache: forgot {', '.join(gone) if gone else 'nothing'}")
