"""Labeling in a real browser: clicks and a typed key in JupyterLab reach the saved label store."""

from __future__ import annotations

import re
import time

import nbformat as nbf
import pytest

from cmal.labels import LabelStore
from tests.browser import harness

pytestmark = pytest.mark.browser

SOURCE = """
from sklearn.datasets import load_digits
from cmal.labels import LabelStore
from cmal_widgets import LabelingModel, LabelingWidget
d = load_digits()
store = LabelStore.create({store!r}, batch=[5, 17, 42, 99], classes=[str(i) for i in range(10)], clusters=[1, 1, 2, 3])
LabelingWidget(LabelingModel(store, images=d.images / 16.0), columns=4)
"""


def test_labeling_by_clicking(tmp_path):
    reason = harness.unavailable_reason()
    if reason:
        pytest.skip(reason)
    store_path = tmp_path / "labels.json"
    book = nbf.v4.new_notebook(cells=[nbf.v4.new_code_cell(SOURCE.format(store=str(store_path)).strip())])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbf.write(book, tmp_path / "labeling.ipynb")
    with harness.jupyter_lab(tmp_path) as (base, token), harness.chromium_page() as page:
        harness.open_and_run_all(page, base, token, "labeling.ipynb", ready="button.cmal-label-class")
        page.locator("button.cmal-label-class", has_text=re.compile(r"^\s*3\s*$")).click()  # item 5 -> "3"
        page.locator("button.cmal-label-class", has_text=re.compile(r"^\s*7\s*$")).click()  # item 17 -> "7"
        page.locator("button", has_text=re.compile(r"^\s*unsure\s*$")).click()  # item 42: unsure
        box = page.locator("input[placeholder^='type a class key']")
        box.fill("8")  # item 99 -> "8"
        box.press("Enter")
        deadline = time.monotonic() + 30
        answers = None
        while time.monotonic() < deadline:
            store = LabelStore.open(store_path)
            answers = [store.answer(i) for i in (5, 17, 42, 99)]
            if answers == [3, 7, "unsure", 8]:
                break
            time.sleep(0.3)
        page.wait_for_selector("text=3/4 labeled", timeout=10_000)
    # Saved click by click: the file on disk holds every answer without any "save" step.
    assert answers == [3, 7, "unsure", 8]
