"""The labeling widget's model and view without a browser: answers are saved as they are given."""

from __future__ import annotations

import numpy as np
import pytest

from cmal.labels import LabelStore
from cmal_widgets.labeling import LabelingModel, LabelingWidget


@pytest.fixture
def store(tmp_path):
    return LabelStore.create(
        tmp_path / "labels.json",
        batch=[30, 4, 17, 8],
        classes=[str(d) for d in range(10)],
        clusters=[1, 1, 5, 9],
        round=2,
    )


def test_clicks_and_keys_are_saved_at_once(store):
    model = LabelingModel(store, images=np.random.default_rng(0).random((40, 8, 8)))
    assert model.current == 30
    model.assign(3)
    # A second process (or a restarted kernel) sees the answer immediately.
    assert LabelStore.open(store.path).answer(30) == 3
    assert model.current == 4
    model.press("7")
    model.press("s")  # skip 17
    model.press("?")  # unsure about 8
    reopened = LabelStore.open(store.path)
    assert [reopened.answer(i) for i in (30, 4, 17, 8)] == [3, 7, "skip", "unsure"]
    assert not reopened.complete and reopened.remaining().tolist() == [17, 8]
    # Skipped items come back: click one, label it.
    model.select(17)
    model.assign("5")
    model.assign(0, index=8)
    assert LabelStore.open(store.path).labels().tolist() == [3, 7, 5, 0]
    assert model.current is None and "complete" in model.status()


def test_unknown_keys_and_bad_labels(store):
    model = LabelingModel(store)
    assert model.press("x") is None and model.press("") is None
    with pytest.raises(ValueError, match="unknown class"):
        model.assign("cat")
    with pytest.raises(ValueError, match="not in this batch"):
        model.select(999)
    with pytest.raises(ValueError, match="not in this batch"):
        model.assign(1, index=999)


def test_resuming_a_half_labeled_batch_starts_at_the_first_open_item(store):
    store.give(30, 1)
    store.give(4, 2)
    assert LabelingModel(LabelStore.open(store.path)).current == 17


def test_view_shows_answers_and_clusters(store):
    model = LabelingModel(store, images=np.random.default_rng(0).random((40, 8, 8)))
    view = LabelingWidget(model, columns=2)
    assert len(view._tiles) == 4 and "c5" in view._tiles[17].description
    view.buttons[6].click()  # class "6" for the current item (30)
    assert store.answer(30) == 6 and "· 6" in view._tiles[30].description
    view.keybox.value = "2"  # typed key labels the next item (4)
    assert store.answer(4) == 2 and view.keybox.value == ""
    view._tiles[8].click()  # make 8 current
    view.buttons[-1].click()  # "unsure"
    assert store.answer(8) == "unsure"
    assert "2/4 labeled" in view.status.value
