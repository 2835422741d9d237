"""The active-learning loop on real digits (small, seconds)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from cmal.loop import RunConfig, derive_seed, format_table, run

pytestmark = pytest.mark.slow

SMALL = dict(
    dataset="digits",
    strategies=("cluster-margin", "margin", "random", "coreset"),
    rounds=2,
    batch_size=20,
    seed_size=30,
    min_steps=30,
    epochs=1,
    pool_size=400,
    test_size=200,
)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    seen = []
    results = run(RunConfig(**SMALL), out, progress=False, on_round=seen.append)
    return out, results, seen


def test_results_record_every_round(small_run):
    out, results, seen = small_run
    assert results["complete"] is True
    assert [(r["strategy"], r["seed"]) for r in results["runs"]] == [
        ("cluster-margin", 0),
        ("margin", 0),
        ("random", 0),
        ("coreset", 0),
    ]
    for r in results["runs"]:
        assert [x["n_labeled"] for x in r["rounds"]] == [30, 50, 70]
        assert all(0 <= x["accuracy"] <= 1 and x["select_seconds"] >= 0 for x in r["rounds"])
    # Round 0 is the shared seed model: identical for all strategies.
    assert len({r["rounds"][0]["accuracy"] for r in results["runs"]}) == 1
    assert len(seen) == 8 and seen[0]["strategy"] == "cluster-margin" and seen[0]["round"] == 1
    assert results["clustering"][0]["n_clusters"] == 20  # default: pool / 20
    assert results["clustering"][0]["seed_strategy"] == "random" and results["clustering"][0]["seed_classes"] <= 10
    # The stopping signals of every round after the seed model, whatever config.stop says.
    for r in results["runs"]:
        assert r["stopped"] is None
        assert r["rounds"][0].get("stop_agreement") is None
        for x in r["rounds"][1:]:
            assert -1 <= x["stop_agreement"] <= 1 and 0 <= x["batch_mean_margin"] <= 1


def test_run_directory(small_run):
    out, results, _ = small_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["runs"] == json.loads(json.dumps(results["runs"]))
    assert json.loads((out / "config.json").read_text())["config"]["k_m"] == 25
    sel = np.load(out / "selections" / "margin_seed0.npz", allow_pickle=False)
    assert sel["labeled"].size == 70 and np.unique(sel["labeled"]).size == 70
    assert np.bincount(sel["round_of"]).tolist() == [30, 20, 20]
    assert not list(out.glob("**/*.tmp"))


def test_same_seed_same_selections(small_run, tmp_path):
    out, _, _ = small_run
    cfg = RunConfig(**{**SMALL, "strategies": ("cluster-margin",)})
    run(cfg, tmp_path, progress=False)
    a = np.load(out / "selections" / "cluster-margin_seed0.npz")["labeled"]
    b = np.load(tmp_path / "selections" / "cluster-margin_seed0.npz")["labeled"]
    np.testing.assert_array_equal(a, b)


def test_summary_table(small_run):
    _, results, _ = small_run
    table = format_table(results["summary"])
    assert "cluster-margin" in table and "70 labels" in table
    assert results["summary"][0]["n_labeled"] == [30, 50, 70]
    # A row measured at other label counts is not put under the first row's "N labels" headers.
    other = {**results["summary"][1], "strategy": "bigger-batches", "n_labeled": [30, 70, 110]}
    mixed = format_table([results["summary"][0], other])
    assert "labels" not in mixed.splitlines()[0] and "round 2" in mixed and "@110" in mixed and "@70" in mixed


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, "train", 1) == derive_seed(0, "train", 1)
    assert len({derive_seed(s, k) for s in range(20) for k in ("a", "b", "c")}) == 60
    # SHA-256 of "seed/keys", not Python's salted hash(): the same on every platform and in every process.
    assert derive_seed(0, "x") == int.from_bytes(hashlib.sha256(b"0/x").digest()[:4], "little")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"strategies": ("nope",)}, "Unknown strategy"),
        ({"strategies": ("no_such_module:rule",)}, "Cannot import strategy"),
        ({"strategies": ()}, "non-empty"),
        ({"strategies": ("margin", "margin")}, "twice"),
        ({"candidates": 10}, "k_m must be >= k_t"),
        ({"rounds": 0}, "rounds"),
        ({"epsilon": 1.0, "target_clusters": 5}, "not both"),
        ({"epsilon": -1.0}, "epsilon"),
        ({"rounds": 100}, "lower rounds"),
        ({"dataset": "imagenet"}, "Unknown dataset"),
        ({"hac_method": "fast"}, "method must be"),
        ({"knn_k": 0}, "knn_k"),
        ({"seed_strategy": "margin"}, "needs probs"),
        ({"seed_strategy": "nope"}, "seed_strategy must be"),
        ({"seed_embedding": "tsne"}, "seed_embedding must be"),
        ({"stop": "sometimes"}, "stop"),
    ],
)
def test_bad_config(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        run(RunConfig(**{**SMALL, **kwargs}), tmp_path, progress=False)
    assert not (tmp_path / "results.json").exists()


def test_dotted_path_strategies_are_accepted():
    config = RunConfig(**{**SMALL, "strategies": ("cmal.strategies.rules:descending", "margin")})
    assert config.validate() is config


def test_graph_hac_run(tmp_path, capsys):
    """The loop with kNN-graph HAC: clusters come from RAC and the rounds run as with exact HAC. With progress on,
    the run's first line says where it trains (before any progress bar)."""
    config = RunConfig(**{**SMALL, "strategies": ("cluster-margin",), "rounds": 1, "hac_method": "graph", "knn_k": 10})
    results = run(config, tmp_path, progress=True)
    err = capsys.readouterr().err
    assert err.startswith("cmal: training on CPU with 1 replica(s), float32\n"), err[:300]
    info = results["clustering"][0]
    assert info["backend"] == "rac" and info["n_clusters"] == round(400 / 20)


def test_a_stopping_rule_ends_a_strategys_rounds_and_a_resume_keeps_it_stopped(tmp_path):
    from cmal.loop import resume

    # |change of the batch's mean margin| < 1 always holds: the rule fires as soon as it has two margins (round 2).
    config = RunConfig(
        **{**SMALL, "strategies": ("margin",), "rounds": 4, "stop": {"rule": "margin", "threshold": 1.0, "window": 1}}
    )
    results = run(config, tmp_path, progress=False)
    (only,) = results["runs"]
    assert [x["round"] for x in only["rounds"]] == [0, 1, 2]
    assert only["stopped"]["round"] == 2 and "margin" in only["stopped"]["reason"]
    assert results["complete"] is True and results["summary"][0]["n_labeled"] == [30, 50, 70]
    again = resume(tmp_path, progress=False)
    assert [x["round"] for x in again["runs"][0]["rounds"]] == [0, 1, 2]


def test_a_cold_start_seed_set_is_chosen_on_label_free_embeddings():
    from cmal.stage import choose_seed_set
    from cmal.strategies import PoolState, make_strategy
    from cmal.unsupervised import pca_embeddings

    config = RunConfig(**{**SMALL, "seed_strategy": "typiclust"})
    ds = config.load_data()
    chosen, info = choose_seed_set(config, ds.x_pool, 3)
    assert info["seed_strategy"] == "typiclust" and info["seed_embedding"] == "pca"
    assert chosen.shape == (30,) and np.unique(chosen).size == 30 and (np.diff(chosen) > 0).all()
    # The same as running the strategy by hand on the same embeddings with the seeds the run derives.
    emb = pca_embeddings(ds.x_pool, 32, random_state=derive_seed(3, "seed-embedding"))
    by_hand = make_strategy("typiclust", random_state=derive_seed(3, "seed-set")).select(
        PoolState.create(embeddings=emb), 30
    )
    np.testing.assert_array_equal(chosen, np.sort(by_hand))
    random_set, _ = choose_seed_set(RunConfig(**SMALL), ds.x_pool, 3)
    assert not np.array_equal(chosen, random_set)
