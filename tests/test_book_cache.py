"""book/uncache.py forgets the executed outputs of the pages a new run changes, and only those."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]


def _uncache():
    spec = importlib.util.spec_from_file_location("uncache", REPO / "book" / "uncache.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_the_named_pages_are_forgotten(tmp_path):
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = tmp_path / ".jupyter_cache"
    store = get_cache(str(cache))
    for page in ("data.md", "ssl.md", "finetune.md"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"print('{page}')")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        store.cache_notebook_bundle(CacheBundleIn(nb, str(tmp_path / "book" / page)), check_validity=False)
    assert sorted(_uncache().forget(["finetune.md", "ssl.md"], cache)) == ["finetune.md", "ssl.md"]
    assert [Path(r.uri).name for r in store.list_cache_records()] == ["data.md"]
    assert _uncache().forget(["finetune.md"], tmp_path / "nowhere") == []
