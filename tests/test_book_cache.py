"""book/uncache.py forgets the executed outputs of the pages a new run changes, and only those;
book/check_figures.py notices a built page that lost figures its source declares."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]


def _book_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "book" / f"{name}.py")
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
    assert sorted(_book_script("uncache").forget(["finetune.md", "ssl.md"], cache)) == ["finetune.md", "ssl.md"]
    assert [Path(r.uri).name for r in store.list_cache_records()] == ["data.md"]
    assert _book_script("uncache").forget(["finetune.md"], tmp_path / "nowhere") == []


FIGURE_CELL = """```{code-cell} ipython3
---
mystnb:
  image:
    alt: "A line."
  figure:
    caption: "A line."
---
plt.plot([0, 1])
```
"""
EXAMPLE = "````md\n" + FIGURE_CELL + "````\n"  # a cell's source shown on a page, not a cell of it


def test_a_built_page_with_fewer_images_than_declared_figures_is_named(tmp_path):
    check = _book_script("check_figures")
    (tmp_path / "_build" / "html").mkdir(parents=True)
    (tmp_path / "two.md").write_text("# Two\n\n" + FIGURE_CELL + "\ntext\n\n" + FIGURE_CELL + EXAMPLE)
    (tmp_path / "example.md").write_text("# Only an example\n\n" + EXAMPLE)
    (tmp_path / "_build" / "html" / "example.html").write_text("<p>no images</p>")
    page = tmp_path / "_build" / "html" / "two.html"
    page.write_text('<img src="a.png" alt="A line."/>')
    assert check.missing_figures(tmp_path) == [f"{page}: 1 images for the 2 figures two.md declares"]
    page.write_text('<img src="a.png"/><img src="b.png"/>')
    assert check.missing_figures(tmp_path) == []
    assert all(check.declared_figures((REPO / "book" / f"{name}.md").read_text()) >= 3
               for name in ("data", "ssl", "finetune", "explain", "dynamics"))
