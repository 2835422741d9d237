"""TypiClust and ProbCover on hand-built pools, against brute-force references, and on real digits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from cmal.strategies import (
    PoolState,
    ProbCover,
    RandomSampling,
    TypiClust,
    choose_delta,
    coverage,
    make_strategy,
    typicality,
)
from cmal.strategies.cold_start import _Balls, _kmeans, _threads

# ---------------------------------------------------------------------------------------------- helpers


def blobs(sizes, gap=20.0, seed=0, dim=2):
    """Well separated blobs of the given sizes: a centre point (listed first, the densest) and the others at
    distance 1 to 2 around it, spread evenly in angle in 2-D; returns (points, blob id per point, index of each
    blob's centre)."""
    rng = np.random.default_rng(seed)
    points, ids, centres = [], [], []
    for b, size in enumerate(sizes):
        centre = np.zeros(dim)
        centre[0] = gap * b
        if dim == 2:
            angle = np.linspace(0, 2 * np.pi, size - 1, endpoint=False) + rng.uniform(0, 0.1, size - 1)
            ring = np.c_[np.cos(angle), np.sin(angle)]
        else:
            ring = rng.normal(size=(size - 1, dim))
            ring /= np.linalg.norm(ring, axis=1, keepdims=True)
        ring *= rng.uniform(1.0, 2.0, size=(size - 1, 1))
        centres.append(sum(sizes[:b]))
        points.append(np.vstack([centre, centre + ring]))
        ids.append(np.full(size, b))
    return np.vstack(points), np.concatenate(ids), np.array(centres)


def brute_typicality(x, labels, k):
    out = np.zeros(len(x))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        d = cdist(x[idx], x[idx])
        np.fill_diagonal(d, np.inf)
        kk = min(k, idx.size - 1)
        if kk:
            out[idx] = 1.0 / np.sort(d, axis=1)[:, :kk].mean(axis=1)
    return out


def within_delta(x, delta, band=0.0):
    """Boolean (n, n): pairs within ``delta * (1 + band)``, in float64 from coordinate differences (row blocks).

    The strategy tests distances in float32: pairs within rounding of ``delta`` may go either way, so exact
    comparisons need data with no pair near ``delta`` (``band`` > 0 widens the ball to find such pairs)."""
    return np.vstack([cdist(x[i : i + 1000], x) <= delta * (1 + band) for i in range(0, len(x), 1000)])


def lattice(*ranges):
    """Integer points of a box, one ``range`` per axis: exact in float32, so distance tests have no rounding."""
    return np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, len(ranges)).astype(float)


def greedy_trace(x, delta, labeled, picks, exact=False):
    """For each pick: (points it newly covers, the most any unlabeled unpicked point could newly cover).

    Unless the data are ``exact`` (small integers, symmetric about 0 so centring changes nothing), no pair may
    lie within rounding of ``delta``."""
    within = within_delta(x, delta)
    if not exact:
        assert (within_delta(x, delta, -1e-4) == within_delta(x, delta, 1e-4)).all(), "a pair is too close to delta"
    labeled = np.asarray(labeled, dtype=int)
    covered = within[labeled].any(axis=0)
    covered[labeled] = True
    gains = (within & ~covered).sum(axis=1)
    taken = np.zeros(len(x), bool)
    taken[labeled] = True
    trace = []
    for u in picks:
        new = within[u] & ~covered
        trace.append((int(new.sum()), int(np.where(taken, -1, gains).max())))
        covered |= new
        taken[u] = True
        gains -= within[new].sum(axis=0)  # symmetric: the balls holding a newly covered point lose it
    return trace


def greedy_steps(trace):
    """Check every pick covers as many new points as any could, until coverage is complete; return how many
    greedy picks that took."""
    steps = 0
    for gain, best in trace:
        if best == 0:
            break
        assert gain == best >= 1, (steps, gain, best)
        steps += 1
    return steps


GRID = lattice(range(10), range(10))  # its mean (4.5, 4.5) is exact too


# ---------------------------------------------------------------------------------------------- TypiClust


def test_typicality_centre_beats_outlier_and_matches_brute_force(rng):
    x = np.vstack([rng.normal(size=(30, 3)) * 0.1, [[3.0, 3, 3]], rng.normal(size=(12, 3)) * 0.5 + 10])
    labels = np.r_[np.zeros(31, int), np.ones(12, int)]
    t = typicality(x, labels, k=20)
    assert t.shape == (43,)
    assert t[30] == t[:31].min()  # the outlier of the first cluster
    assert t[:30].max() > 5 * t[30]
    np.testing.assert_allclose(t, brute_typicality(x, labels, 20), rtol=1e-10)
    # K = min(k, m - 1): each cluster uses all its other points (30 and 11).
    t = typicality(x, labels, k=50)
    np.testing.assert_allclose(t[:31], brute_typicality(x, labels, 30)[:31], rtol=1e-10)
    np.testing.assert_allclose(t[31:], brute_typicality(x, labels, 11)[31:], rtol=1e-10)


def test_typicality_large_cluster_path_and_edge_cases(rng):
    x = rng.normal(size=(2500, 4))  # above the exact-cdist size: scikit-learn's kNN path
    labels = np.zeros(2500, int)
    np.testing.assert_allclose(typicality(x, labels, k=5), brute_typicality(x, labels, 5), rtol=1e-6)
    t = typicality(np.array([[0.0], [1.0], [1.0], [1.0]]), [0, 1, 1, 1], k=2)
    assert t[0] == 0.0  # a cluster of one point
    assert np.isinf(t[1:]).all()  # duplicates: mean distance 0


def test_typiclust_picks_each_clusters_densest_point_largest_first():
    x, ids, centres = blobs([12, 9, 7])
    picks = TypiClust(random_state=0).select(PoolState.create(embeddings=x), 3)
    np.testing.assert_array_equal(picks, centres)  # largest blob first, each blob's centre
    t = typicality(x, ids)
    assert all(t[c] == t[ids == b].max() for b, c in enumerate(centres))


def test_typiclust_skips_labeled_clusters_and_visits_small_clusters_last():
    x, ids, centres = blobs([12, 9, 7])
    state = PoolState.create(embeddings=x, labeled=[3])  # a point of the largest blob
    picks = TypiClust(random_state=0).select(state, 2)
    np.testing.assert_array_equal(picks, centres[1:])
    # A 3-point cluster is uncovered but below min_cluster_size: the larger clusters come first, covered or not.
    x, ids, centres = blobs([12, 10, 3])
    state = PoolState.create(embeddings=x, labeled=[0])
    picks = TypiClust(max_clusters=3, random_state=0).select(state, 3)
    assert ids[picks].tolist() == [1, 0, 1]
    picks = TypiClust(max_clusters=3, min_cluster_size=3, random_state=0).select(state, 2)
    assert ids[picks].tolist() == [1, 2]


def test_typiclust_round_robin_after_every_cluster_is_covered():
    x, ids, centres = blobs([8, 6, 5])
    state = PoolState.create(embeddings=x, labeled=centres)  # 3 labeled + k_t: k-means into 3 + k_t clusters
    picks = TypiClust(max_clusters=3, random_state=0).select(state, 16)  # everything unlabeled
    assert sorted(picks.tolist()) == sorted(set(range(19)) - set(centres.tolist()))
    # Rounds: every blob gives one point per round while it has points left, the largest first.
    assert ids[picks[:9]].tolist() == [0, 1, 2] * 3
    t = typicality(x, ids)
    for b in range(3):  # within a blob, points come in decreasing typicality
        order = picks[ids[picks] == b]
        assert np.all(np.diff(t[order]) <= 0)


# ---------------------------------------------------------------------------------------------- ProbCover


def test_coverage_on_a_unit_grid():
    assert coverage(GRID, 1.0, [55]) == 0.05  # an interior point and its 4 neighbours
    assert coverage(GRID, 1.0, [0]) == 0.03  # a corner
    assert coverage(GRID, 1.5, [55]) == 0.09  # diagonals too
    assert coverage(GRID, 0.0, [1, 2]) == 0.02
    assert coverage(GRID, 1.0, []) == 0.0
    assert coverage(GRID, 100.0, [7]) == 1.0


def test_probcover_greedy_on_a_grid_is_exact_maximum_coverage():
    picks = ProbCover(delta=1.0, random_state=0).select(PoolState.create(embeddings=GRID), 60)
    assert coverage(GRID, 1.0, picks[:1]) == 0.05  # the first pick is interior: 5 points
    trace = greedy_trace(GRID, 1.0, [], picks, exact=True)
    steps = greedy_steps(trace)  # every pick covers as many new points as any could, never only covered ones
    assert 28 <= steps <= 40  # 28 is the domination number of the 10 x 10 grid
    assert coverage(GRID, 1.0, picks[:steps]) == 1.0
    for j in range(1, steps + 1):  # coverage values agree with the trace, exactly
        assert coverage(GRID, 1.0, picks[:j]) == sum(g for g, _ in trace[:j]) / 100


def test_probcover_starts_from_the_labeled_balls():
    labeled = [44, 45, 54, 55]
    picks = ProbCover(delta=1.0, random_state=1).select(PoolState.create(embeddings=GRID, labeled=labeled), 60)
    assert not np.isin(picks, labeled).any()
    trace = greedy_trace(GRID, 1.0, labeled, picks, exact=True)
    steps = greedy_steps(trace)
    # The labeled balls' 12 points start covered: the picks' counts add up to the other 88.
    assert sum(g for g, _ in trace[:steps]) == 88
    assert coverage(GRID, 1.0, np.r_[labeled, picks[:steps]]) == 1.0


def test_probcover_general_position_matches_the_brute_force_greedy(rng):
    x = rng.normal(size=(400, 2))
    labeled = rng.choice(400, 15, replace=False)
    strategy = ProbCover(delta=0.25, random_state=3)
    picks = strategy.select(PoolState.create(embeddings=x, labeled=labeled), 385)  # the whole unlabeled pool
    steps = greedy_steps(greedy_trace(x, 0.25, labeled, picks))
    # Greedy until every point is covered, then uniformly random unlabeled points.
    assert coverage(x, 0.25, np.r_[labeled, picks[:steps]]) == 1.0
    assert coverage(x, 0.25, np.r_[labeled, picks[: steps - 1]]) < 1.0
    assert strategy.last_delta == 0.25


def test_pruned_and_symmetric_ball_counts_equal_brute_force():
    # Four lattice boxes (exact in float32), above the symmetric-block size, with and without k-means cells:
    # every counting path against brute force, exactly.
    x = np.vstack([lattice(range(-8, 8), range(-8, 8), range(-5, 0)) + [dx, 0, 0] for dx in (-30, -10, 10, 30)])
    x -= x.mean(axis=0)
    delta = 1.5  # distances 1 and sqrt(2) in, sqrt(3) out
    truth = within_delta(x, delta)
    rng = np.random.default_rng(0)
    rows, cols = rng.random(len(x)) < 0.7, rng.random(len(x)) < 0.5
    everything = np.ones(len(x), bool)
    x32 = x.astype(np.float32)
    with _threads() as pool:
        for cells in (None, _kmeans(x32, 6, rng)):
            balls = _Balls(x32, delta, cells, pool)
            np.testing.assert_array_equal(balls.count(everything, everything), truth.sum(axis=1))
            np.testing.assert_array_equal(balls.count(rows, cols), np.where(rows, (truth & cols).sum(axis=1), 0))
            np.testing.assert_array_equal(balls.reached(rows, cols), truth[rows].any(axis=0) & cols)
            # Mostly overlapping rows and columns: the symmetric pass plus the pairs outside it.
            many_rows, many_cols = rows | (rng.random(len(x)) < 0.9), cols | (rng.random(len(x)) < 0.9)
            expected = np.where(many_rows, (truth & many_cols).sum(axis=1), 0)
            np.testing.assert_array_equal(balls.count(many_rows, many_cols), expected)
            # A few columns (a pick's new points) take a direct path; one ball alone another.
            few = np.zeros(len(x), bool)
            few[rng.choice(len(x), 20, replace=False)] = True
            np.testing.assert_array_equal(balls.count(rows, few), np.where(rows, (truth & few).sum(axis=1), 0))
            for u in (0, 777, len(x) - 1):
                np.testing.assert_array_equal(balls.ball(u), truth[u])
            if cells is not None:
                assert balls.bound is not None and balls.bound.mean() > 0.3  # the cells did prune
    # Duplicates are in each other's balls even at radius 0; distinct points are not.
    balls = _Balls(np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.1]], dtype=np.float32), 0.0, None, None)
    assert balls.count(np.ones(3, bool), np.ones(3, bool)).tolist() == [2, 2, 1]


def test_choose_delta_on_two_blobs_and_purity_by_brute_force(rng):
    a = rng.normal(size=(100, 2))
    b = rng.normal(size=(60, 2)) + [9.0, 0]
    x, labels = np.vstack([a, b]), np.r_[np.zeros(100, int), np.ones(60, int)]
    gap = cdist(a, b).min()
    delta = choose_delta(x, labels, purity=1.0)
    assert gap * (1 - 1e-6) < delta < gap  # no ball reaches the other blob, and none could be larger

    def purity(d):
        within = cdist(x, x) <= d
        return np.mean([(labels[row] == labels[i]).all() for i, row in enumerate(within)])

    for p in (0.95, 0.8):
        delta = choose_delta(x, labels, purity=p)
        assert purity(delta) >= p > purity(delta * (1 + 1e-6))  # the largest such radius
        assert delta > gap  # a few balls (5%, 20%) may cross
    assert choose_delta(x, np.zeros(160, int)) == np.inf  # one pseudo-label: every ball is pure
    # Above max_points a seeded sample estimates it: the same seed, the same radius, among the smallest r.
    est = choose_delta(x, labels, 0.95, max_points=120, random_state=0)
    assert est == choose_delta(x, labels, 0.95, max_points=120, random_state=0)
    r = np.sort(np.r_[cdist(a, b).min(axis=1), cdist(b, a).min(axis=1)])
    assert r[0] <= est < r[32]


def test_probcover_chooses_delta_by_purity_and_records_it():
    x, _, _ = blobs([40, 30, 30], gap=30.0)
    strategy = ProbCover(n_classes=3, random_state=0)
    picks = strategy.select(PoolState.create(embeddings=x), 3)
    assert 2.0 < strategy.last_delta < 30.0  # each ball holds its blob and no other
    assert coverage(x, strategy.last_delta, picks) == 1.0
    # n_classes defaults to the number of probability columns.
    probs = np.full((100, 3), 1 / 3)
    assert ProbCover(random_state=0).select(PoolState.create(embeddings=x, probs=probs), 3).shape == (3,)


def test_probcover_large_pool_uses_cells_and_stays_exact(rng):
    # Above the pruning size (k-means cells, threads), on three lattice boxes symmetric about 0 (exact in
    # float32): the greedy must be the exact one, ties and all.
    x = np.vstack([lattice(range(-6, 7), range(-8, 9), range(-8, 9)) + [dx, 0, 0] for dx in (-24, 0, 24)])
    assert len(x) > 10_000 and not x.mean(axis=0).any()
    state = PoolState.create(embeddings=x, labeled=rng.choice(len(x), 50, replace=False))
    picks = ProbCover(delta=1.5, random_state=0).select(state, 40)
    np.testing.assert_array_equal(picks, ProbCover(delta=1.5, random_state=0).select(state, 40))
    assert greedy_steps(greedy_trace(x, 1.5, state.labeled, picks, exact=True)) == 40


# ---------------------------------------------------------------------------------------------- both


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: TypiClust(max_clusters=0), "max_clusters"),
        (lambda: TypiClust(min_cluster_size=0), "min_cluster_size"),
        (lambda: TypiClust(n_neighbors=2.5), "n_neighbors"),
        (lambda: ProbCover(delta=-1.0), "delta"),
        (lambda: ProbCover(delta=float("nan")), "delta"),
        (lambda: ProbCover(delta="1"), "delta"),
        (lambda: ProbCover(purity=0.0), "purity"),
        (lambda: ProbCover(purity=1.5), "purity"),
        (lambda: ProbCover(n_classes=1), "n_classes"),
    ],
)
def test_bad_parameters_name_the_argument(make, match):
    state = PoolState.create(embeddings=GRID)
    with pytest.raises(ValueError, match=match):
        make().select(state, 3)


def test_bad_arguments_of_the_plain_functions():
    with pytest.raises(ValueError, match="k"):
        typicality(GRID, np.zeros(100, int), k=0)
    with pytest.raises(ValueError, match="labels_of_clusters"):
        typicality(GRID, np.zeros(99, int))
    with pytest.raises(ValueError, match="delta"):
        coverage(GRID, -0.5, [0])
    with pytest.raises(ValueError, match="chosen"):
        coverage(GRID, 1.0, [100])
    with pytest.raises(ValueError, match="purity"):
        choose_delta(GRID, np.zeros(100, int), purity=2)
    with pytest.raises(ValueError, match="pseudo_labels"):
        choose_delta(GRID, np.zeros(3, int))
    with pytest.raises(ValueError, match="embeddings"):
        TypiClust().select(PoolState.create(embeddings=np.full((5, 2), 1e20)), 1)


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_one_seed_replays_the_batch_and_duplicates_work(name, rng):
    x = np.repeat(rng.normal(size=(30, 4)), 4, axis=0)  # every point four times
    state = PoolState.create(embeddings=x, labeled=[0, 5])
    a = make_strategy(name, random_state=5).select(state, 40)
    np.testing.assert_array_equal(a, make_strategy(name, random_state=5).select(state, 40))
    assert np.unique(a).size == 40
    seeds = {tuple(make_strategy(name, random_state=s).select(state, 40)) for s in range(4)}
    assert len(seeds) > 1
    assert make_strategy(name, random_state=0).get_params()["random_state"] == 0


@pytest.fixture(scope="module")
def digits_embeddings():
    """scikit-learn's digits (1,797 8x8 images): raw pixels, and an unsupervised spectral embedding in which the
    classes cluster, as they do in the self-supervised features the papers use."""
    from sklearn.datasets import load_digits
    from sklearn.manifold import SpectralEmbedding

    x, y = load_digits(return_X_y=True)
    return x / 16.0, SpectralEmbedding(n_components=10, random_state=0).fit_transform(x / 16.0), y


def distinct_classes(strategy_of_seed, embeddings, y, seeds=range(6)):
    state = PoolState.create(embeddings=embeddings)
    return np.mean([np.unique(y[strategy_of_seed(s).select(state, 10)]).size for s in seeds])


def test_seed_sets_are_more_class_balanced_than_random_on_digits(digits_embeddings):
    raw, spectral, y = digits_embeddings
    random = distinct_classes(lambda s: RandomSampling(random_state=s), spectral, y)
    assert 6.0 <= random <= 7.2  # 10 draws from 10 balanced classes: 6.5 distinct on average
    assert distinct_classes(lambda s: TypiClust(random_state=s), spectral, y) >= random + 1.5
    assert distinct_classes(lambda s: ProbCover(random_state=s), spectral, y) >= random + 1.0
    assert distinct_classes(lambda s: TypiClust(random_state=s), raw, y) >= random + 1.0
    # On raw pixels the purity-0.95 radius is small (balls of about 5 points), so ProbCover's greedy takes the
    # densest spots, which bunch up in a few classes: no better than random there. The paper's setting is
    # features in which classes cluster (above); a lower purity widens the balls.
    assert distinct_classes(lambda s: ProbCover(purity=0.8, random_state=s), raw, y) >= random + 1.0
