"""Compiled RAC rounds over the cluster graph's rows: the fast engine behind :func:`cmal.graph_hac.rac`.

:mod:`cmal.graph_hac` states the algorithm with numpy over a flat edge list (its functions are the reference,
and the Dask backend runs them per partition). This module runs the same rounds as numba kernels over the
cluster graph stored by rows (row ``i`` is ``starts[i]:ends[i]`` of the entry arrays, like CSR but with gaps
between rows after the first round; ``col`` sorted within each row, and per entry ``s`` the weighted sum of the
pair distances covered, ``m`` the weighted number of point pairs covered, ``q`` the weighted sum of their
squares). Hand-written because no library merges a sparse graph in rounds of reciprocal nearest
neighbours; numba comes with the ``scale`` extra (pynndescent), and without it :func:`~cmal.graph_hac.rac`
falls back to the numpy reference.

What makes it fast, besides compiling the loops (measured in ``benchmarks/graph_hac_scale.py``):

- **Each row finds its nearest cluster on its own** (in parallel over rows), completing partial cross sums
  lazily and in order: only the entry with the smallest lower bound is completed, then the row looks again.
  The numpy reference completes every entry below the row's best exact linkage in one vectorized pass. Counted
  with temporary instrumentation on a 64-d mixture at 10^5 points, in an early version of this engine (425
  million evaluations up to n / 20 clusters; today's takes 9 million): 0.6% of the reference's distance
  evaluations decided a nearest cluster; in this engine 2% did, so most of
  the remaining work still only proves that a big neighbour is not the nearest (see the scale guide).
- **Tighter lower bounds** before a partial entry is completed. Besides the k-th-neighbour radius bound of the
  reference (a bound for exact kNN lists; 0 under ``exact_on_graph``), per-cluster sums give the *exact* sum of
  squared distances over all cross pairs; with every missing distance in ``[r, M]`` (``r`` the radius bound, ``M``
  the centroid-radius bound on the diameter) concavity of the square root gives
  ``sqrt(q) >= r + (q - r^2) / (r + M)`` (the chord), summed over the missing pairs; and Jensen gives
  ``mean distance >= |centroid_a - centroid_b|``.
  For ``metric="cosine"`` (``1 - cos = |x - y|^2 / 2`` on unit rows) the first bound *is* the linkage, up to
  rounding.

- **Work is kept between rounds.** Each row's entries sit in a binary heap ordered by (bound, column), so a
  completion or refinement costs O(log length) instead of a rescan of the row (big clusters' rows hold thousands
  of entries); a refined bound stays with its entry while neither of its two clusters changes; and a row whose
  entries and neighbours did not change since the last round keeps its nearest neighbour without looking again.
  With the stage thresholds aimed at ``target_clusters`` (:func:`cmal.graph_hac.next_stage`), these took RAC on
  the 64-d mixture from 88.6 s to 36.5 s at 3*10^5 points and from 626 s to 253 s at 10^6 (the scale guide).
- **Less memory traffic per round.** Each round writes every row once, into the second of two sets of entry
  arrays that then swap: rows stay where they were written, with gaps, instead of being packed again (a second
  copy of the whole graph every round), and the entry arrays are not allocated afresh (page faults on ~1.6 GB a
  round at 10^6 points). A row's heap holds only its entries at or below the stage's threshold, the others are never
  completed; the refined bound runs in SIMD lanes. On one 10^6-point graph these took RAC from 175 s to 108 s,
  with the same merges (``benchmarks/rac_cached.py``; the scale guide's development notes).
- **Bounds carried through merges.** A refined bound is kept as its *excess* over the radius bound, summed over
  the entry's point pairs; the parts of a merged entry add up (the linkage of a union is the pair-weighted mean of
  its parts'), so a merged entry starts from its parts' bounds instead of none, and is refined again only if it
  still comes first. Measured the same way on a 10^6-point graph, on a day the previous engine took 121 s there
  (108 s above): 61 instead of 160 million refined bounds, and RAC 121 s -> 97 s.

Every bound is shaved by a relative margin far above float64 rounding, so a bound never exceeds the true
linkage as long as the radius is a bound (exact kNN lists, or radius 0 under ``exact_on_graph``), and the merges
then equal the reference's (tests compare merge by merge, and with fastcluster on complete graphs). With an
approximate list's radius the two can differ where the list missed a nearer point (the scale guide).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from numba import njit, parallel_chunksize, prange

__all__ = ["available", "rac_csr"]

MODE_AVERAGE, MODE_GRAPH, MODE_EDGES = 0, 1, 2
# Pairs of clusters with fewer point pairs than this are summed by the direct difference loop; larger ones
# through the dot-product form over gathered, re-centred rows.
_SMALL_PAIRS = 64
_GEMM_PAIRS = 2048
# ... up to this many (a matrix of that many float64 per thread: 32 MiB); beyond, the loop, whose memory is
# linear in the cluster sizes.
_GEMM_MAX_PAIRS = 1 << 22
# Relative margins that keep a bound below the true value whatever the rounding (float64 rounding is ~1e-16
# per operation; the sums here add up to 10^7 terms).
_REL = 1e-9
# A kept bound carried through a merge is stored as -excess - _TINY (see kept_link): below zero even for an excess of
# 0, and exact (adding the smallest subnormal double to a normal one rounds back to it), where an offset such as
# -1 - excess would round small excesses to the spacing of doubles near 1.
_TINY = 5e-324


def available() -> bool:
    """Whether :func:`cmal.graph_hac.rac` uses this engine: yes unless ``CMAL_RAC_ENGINE=numpy`` (this module
    needs numba, which comes with the ``scale`` extra; without it ``rac`` runs its numpy rounds)."""
    return os.environ.get("CMAL_RAC_ENGINE", "compiled") != "numpy"


@njit(cache=True, nogil=True)
def csr_from_edges(n, a, b, dist, weights):  # pragma: no cover - compiled
    deg = np.zeros(n + 1, dtype=np.int64)
    for e in range(a.size):
        deg[a[e] + 1] += 1
        deg[b[e] + 1] += 1
    indptr = np.cumsum(deg)
    pos = indptr[:-1].copy()
    size = 2 * a.size
    col = np.empty(size, dtype=np.int32)
    s = np.empty(size)
    m = np.empty(size)
    q = np.empty(size)
    for e in range(a.size):
        i, j = a[e], b[e]
        w = weights[i] * weights[j]
        d = dist[e]
        for u, v in ((i, j), (j, i)):
            p = pos[u]
            col[p] = v
            s[p] = d * w
            m[p] = w
            q[p] = d * d * w
            pos[u] += 1
    # Edges sorted by (a, b) give sorted rows already; anything else is sorted here, row by row.
    for i in range(n):
        lo, hi = indptr[i], indptr[i + 1]
        ok = True
        for p in range(lo + 1, hi):
            if col[p] <= col[p - 1]:
                ok = False
                break
        if not ok:
            order = np.argsort(col[lo:hi], kind="mergesort") + lo
            col[lo:hi] = col[order]
            s[lo:hi] = s[order]
            m[lo:hi] = m[order]
            q[lo:hi] = q[order]
    return indptr, col, s, m, q


@njit(cache=True, nogil=True)
def members_of(label, n_clusters):  # pragma: no cover - compiled
    mstart = np.zeros(n_clusters + 1, dtype=np.int64)
    for p in range(label.size):
        if label[p] >= 0:
            mstart[label[p] + 1] += 1
    mstart = np.cumsum(mstart)
    pos = mstart[:-1].copy()
    members = np.empty(mstart[-1], dtype=np.int64)
    for p in range(label.size):
        c = label[p]
        if c >= 0:
            members[pos[c]] = p
            pos[c] += 1
    return members, mstart


@njit(cache=True, nogil=True, fastmath=True)
def pair_sums(points, weights, cosine, members, mstart, ca, cb):  # pragma: no cover - compiled
    # Always the same orientation, so a pair completed from both of its rows gives bit-identical sums.
    lo_id, hi_id = np.int64(min(ca, cb)), np.int64(max(ca, cb))
    sa, na = mstart[lo_id], mstart[lo_id + 1] - mstart[lo_id]
    sb, nb = mstart[hi_id], mstart[hi_id + 1] - mstart[hi_id]
    return cross_sums(points, weights, cosine, members, sa, na, sb, nb)


@njit(cache=True, nogil=True, fastmath=True)
def cross_sums(points, weights, cosine, members, sa, na, sb, nb):  # pragma: no cover - compiled
    # The exact sums over members[sa : sa + na] x members[sb : sb + nb].
    d = points.shape[1]
    total = 0.0
    total_sq = 0.0
    if na * nb < _SMALL_PAIRS:
        for u in range(na):
            i = members[sa + u]
            row = 0.0
            row_sq = 0.0
            for v in range(nb):
                j = members[sb + v]
                acc = 0.0
                if cosine:
                    for t in range(d):
                        acc += points[i, t] * points[j, t]
                    dist = max(1.0 - acc, 0.0)
                    row += weights[j] * dist
                else:
                    for t in range(d):
                        diff = points[i, t] - points[j, t]
                        acc += diff * diff
                    row += weights[j] * np.sqrt(acc)
                    row_sq += weights[j] * acc
            total += weights[i] * row
            total_sq += weights[i] * row_sq
        return total, total_sq
    # Larger pairs: gather cluster b's rows once, contiguous and centred on a point of cluster a, and use
    # |x - y|^2 = |x|^2 + |y|^2 - 2 x.y (centring keeps the norms at the clusters' scale, so the
    # cancellation costs ~1e-15 relative, far inside the 1e-9 agreement with fastcluster that tests check).
    origin = points[members[sa]]
    gb = np.empty((nb, d))
    nb2 = np.empty(nb)
    wb = np.empty(nb)
    for v in range(nb):
        j = members[sb + v]
        acc = 0.0
        for t in range(d):
            x = points[j, t] - (0.0 if cosine else origin[t])
            gb[v, t] = x
            acc += x * x
        nb2[v] = acc
        wb[v] = weights[j]
    if _GEMM_PAIRS <= na * nb <= _GEMM_MAX_PAIRS:
        # Big pairs: one matrix product (BLAS) gives every dot product, at several times the loop's flop rate.
        gm = np.empty((na, d))
        na2 = np.empty(na)
        for u in range(na):
            i = members[sa + u]
            acc = 0.0
            for t in range(d):
                x = points[i, t] - (0.0 if cosine else origin[t])
                gm[u, t] = x
                acc += x * x
            na2[u] = acc
        dots = np.dot(gm, gb.T)
        for u in range(na):
            i = members[sa + u]
            row = 0.0
            row_sq = 0.0
            for v in range(nb):
                if cosine:
                    row += wb[v] * max(1.0 - dots[u, v], 0.0)
                else:
                    sq = max(na2[u] + nb2[v] - 2.0 * dots[u, v], 0.0)
                    row += wb[v] * np.sqrt(sq)
                    row_sq += wb[v] * sq
            total += weights[i] * row
            total_sq += weights[i] * row_sq
        return total, total_sq
    ga = np.empty(d)
    for u in range(na):
        i = members[sa + u]
        a2 = 0.0
        for t in range(d):
            x = points[i, t] - (0.0 if cosine else origin[t])
            ga[t] = x
            a2 += x * x
        row = 0.0
        row_sq = 0.0
        for v in range(nb):
            dot = 0.0
            for t in range(d):
                dot += ga[t] * gb[v, t]
            if cosine:
                row += wb[v] * max(1.0 - dot, 0.0)
            else:
                sq = max(a2 + nb2[v] - 2.0 * dot, 0.0)
                row += wb[v] * np.sqrt(sq)
                row_sq += wb[v] * sq
        total += weights[i] * row
        total_sq += weights[i] * row_sq
    return total, total_sq


# Reassociation lets the two sums below run in SIMD lanes, and the centroid difference is scaled once instead of
# dividing every coordinate: together about half the time of the plain loop (30 million bounds at 3*10^5 points,
# 6.8 s to 3.1 s on 2 cores). Rounding changes by ~1e-15 relative, far inside the _REL margins; the centroid
# distance of two clusters with (nearly) the same centroid carries an absolute error of ~1e-16 of the centroids'
# scale, above the true linkage only for clusters of identical points.
@njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "arcp"})
def refined_bound(i, j, s_e, m_e, q_e, pairs, rr, cosine, sizes, vsum, sqsum, rho):  # pragma: no cover
    d = vsum.shape[1]
    wa, wb = sizes[i], sizes[j]
    dot = 0.0
    dc2 = 0.0
    for t in range(d):
        dot += vsum[i, t] * vsum[j, t]
        diff = vsum[i, t] * wb - vsum[j, t] * wa
        dc2 += diff * diff
    dc2 = dc2 / ((wa * wb) * (wa * wb))
    big = wb * sqsum[i] + wa * sqsum[j]
    # Exact sum of squared distances over all cross pairs, minus a margin for rounding.
    total_sq = big - 2.0 * dot - _REL * big
    if cosine:
        return 0.5 * total_sq / pairs
    dc = np.sqrt(dc2)
    missing = pairs - m_e
    q_missing = total_sq - q_e * (1.0 + _REL)
    far = (rho[i] + rho[j] + dc) * (1.0 + _REL) + 1e-300
    chord = missing * rr + (q_missing - missing * rr * rr) / (rr + far)
    return max((s_e + chord) / pairs, dc * (1.0 - _REL))


@njit(cache=True, nogil=True)
def sift_down(heap, key, start, size):  # pragma: no cover - compiled
    # Restore the heap order below ``start`` of ``heap`` (positions into ``key``), ordered by (key, position).
    pos = start
    item = heap[pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        other = child + 1
        if other < size and (
            key[heap[other]] < key[heap[child]] or (key[heap[other]] == key[heap[child]] and heap[other] < heap[child])
        ):
            child = other
        c = heap[child]
        if key[c] < key[item] or (key[c] == key[item] and c < item):
            heap[pos] = c
            pos = child
        else:
            break
    heap[pos] = item


@njit(parallel=True, cache=True, nogil=True)
def nearest_rows(
    row_ids,
    starts,
    ends,
    col,
    s,
    m,
    q,
    lb,
    sizes,
    radius,
    vsum,
    sqsum,
    rho,
    threshold,
    mode,
    big_d,
    cosine,
    points,
    weights,
    members,
    mstart,
    done,
    nn,
    nn_link,
    exact_top,
    dirty,
    link,
    state,
    heap,
):  # pragma: no cover - compiled
    # nn, nn_link, exact_top: each row's result, written for the dirty rows only (a clean row's entries and both
    # sides of each entry are as they were when its result was found, so it would find the same again).
    # Row ``row`` holds entries starts[row]:ends[row] (rows may have gaps between them, see merge_rows).
    # link, state, heap: scratch with room for every entry (one allocation per row cost ~10^8 of them at 10^6
    # points); state is 0 for an exact entry, 1 partial, 2 partial with a refined bound.
    n_rows = starts.size
    completed = np.zeros(n_rows, dtype=np.int64)
    refined = np.zeros(n_rows, dtype=np.int64)
    evaluated = np.zeros(n_rows)
    refine = vsum.shape[0] > 0
    for row in prange(n_rows):
        # The cluster of this row (prange's index is unsigned; numba would unify it with int32 columns as float).
        i = np.int64(row_ids[row])
        lo, hi = starts[row], ends[row]
        if not dirty[row]:
            continue
        nn[row] = -1
        nn_link[row] = np.inf
        exact_top[row] = True
        if lo == hi:
            continue
        # Entries whose link is above the threshold are never completed or refined (links only rise), so only
        # those at or below it go into the heap; of the rest only the smallest is kept, as the row's result if
        # the heap runs out. Same result as a heap of the whole row, without ordering the (many) entries above.
        hs = 0
        above = -1
        for e in range(lo, hi):
            j = np.int64(col[e])
            pairs = sizes[i] * sizes[j]
            state[e] = 0
            if mode == MODE_GRAPH:
                link[e] = (s[e] + (pairs - m[e]) * big_d) / pairs
            elif mode == MODE_EDGES:
                link[e] = s[e] / m[e]
            elif m[e] < pairs:
                # A bound refined in an earlier round (while neither cluster changed) or carried through a merge.
                link[e], state[e] = kept_link(s[e], m[e], pairs, max(radius[i], radius[j]), lb[e])
            else:
                link[e] = s[e] / m[e]
            if link[e] <= threshold:
                heap[lo + hs] = e
                hs += 1
            elif above < 0 or link[e] < link[above]:
                above = e
        # A binary heap ordered by (link, position): the top is the entry a scan for the first smallest link
        # would find. Completing or refining an entry only raises its link, so it is sifted down from the top:
        # O(log len) per step, where rescanning the row cost O(len) per step (billions of entry visits at 10^5
        # points, mostly in the long rows of big clusters).
        h = heap[lo : lo + hs]
        for start in range(hs // 2 - 1, -1, -1):
            sift_down(h, link, start, hs)
        while hs:
            e = h[0]
            if state[e] == 0 or link[e] > threshold:
                break
            j = np.int64(col[e])
            pairs = sizes[i] * sizes[j]
            if state[e] == 1 and refine:
                state[e] = 2
                refined[row] += 1
                bound = refined_bound(
                    i, j, s[e], m[e], q[e], pairs, max(radius[i], radius[j]), cosine, sizes, vsum, sqsum, rho
                )
                if bound > link[e]:
                    link[e] = bound
                    sift_down(h, link, 0, hs)
                lb[e] = excess_of(link[e], s[e], m[e], pairs, max(radius[i], radius[j]))  # a carried one may be tighter
                continue
            total, total_sq = pair_sums(points, weights, cosine, members, mstart, i, j)
            s[e] = total
            q[e] = total_sq
            m[e] = pairs
            lb[e] = -np.inf  # exact now: no excess to carry into a merge
            link[e] = total / pairs
            state[e] = 0
            done[e] = True
            sift_down(h, link, 0, hs)
            completed[row] += 1
            evaluated[row] += (mstart[i + 1] - mstart[i]) * (mstart[j + 1] - mstart[j])
        best = h[0] if hs else above
        if hs and above >= 0 and (link[above] < link[best] or (link[above] == link[best] and above < best)):
            best = above
        nn[row] = col[best]
        nn_link[row] = link[best]
        exact_top[row] = state[best] == 0
    return completed.sum(), evaluated.sum(), refined.sum()


@njit(cache=True, nogil=True)
def sync_mirrors(starts, ends, col, s, m, q, lb, done, touched):  # pragma: no cover - compiled
    # A completed entry (i, j) gives its mirror (j, i) the same sums (rows own their entries while the
    # parallel pass runs, so mirrors are written afterwards).
    for i in range(starts.size):
        for e in range(starts[i], ends[i]):
            if done[e]:
                done[e] = False
                j = col[e]
                lo, hi = starts[j], ends[j]
                p = lo + np.searchsorted(col[lo:hi], i)
                if p < hi and col[p] == i:
                    s[p] = s[e]
                    m[p] = m[e]
                    q[p] = q[e]
                    lb[p] = -np.inf
                    done[p] = False
                    touched[j] = True


@njit(cache=True, nogil=True)
def kept_link(s_e, m_e, pairs, rr, lb_e):  # pragma: no cover - compiled
    # The link of a partial entry (average linkage) and its state: the radius bound of its missing pairs, raised
    # by its kept bound. lb_e keeps the bound as an excess: how much the bound's total over the entry's point pairs
    # exceeds the radius bound's (>= 0; a sum, so the parts of a merged entry add up without their sizes); as is
    # once refined (state 2, final), as -excess - _TINY when carried through a merge (state 1, refinable still),
    # and -inf when none is known.
    link = (s_e + (pairs - m_e) * rr) / pairs
    if lb_e >= 0.0:
        return link + lb_e / pairs, 2
    if lb_e > -np.inf:
        return link + (-lb_e - _TINY) / pairs, 1
    return link, 1


@njit(cache=True, nogil=True)
def excess_of(link, s_e, m_e, pairs, rr):  # pragma: no cover - compiled
    # The excess (see kept_link) of a lower bound ``link`` on a partial entry's linkage.
    return max(link * pairs - s_e - (pairs - m_e) * rr, 0.0)


@njit(cache=True, nogil=True)
def carried_excess(lb_e):  # pragma: no cover - compiled
    # The excess a part brings to the entry it merges into (see merge_row). The linkage of a union is the
    # pair-weighted mean of its parts', so their totals add up. The merged entry's radius bound counts its parts'
    # missing pairs at the merged clusters' radius, no larger than theirs, and the pairs no part covered at a radius
    # that holds for them; so its radius bound plus the parts' excesses is still a lower bound.
    if lb_e >= 0.0:
        return lb_e
    if lb_e > -np.inf:
        return -lb_e - _TINY
    return 0.0


@njit(cache=True, nogil=True)
def merge_row(
    u, src, starts, ends, col, s, m, q, lb, cmap, carry, out_col, out_s, out_m, out_q, out_lb, at
):  # pragma: no cover - compiled
    # New row u = old rows src[u, 0] (and src[u, 1] if it merged), columns mapped through cmap, dead
    # clusters and the self loop dropped, duplicate columns summed. An entry keeps its refined bound ``lb`` if
    # neither of its clusters merged (the bound depends on both clusters' sums and on the entry's). Otherwise, with
    # ``carry`` (average linkage), the sum of its parts' excesses is kept as a bound still to refine (kept_link,
    # carried_excess): ~60% fewer refined bounds at 10^6 points. Returns the row's length and whether any of its
    # columns merged or was dropped.
    r0, r1 = src[u, 0], src[u, 1]
    lo0, hi0 = starts[r0], ends[r0]
    changed = False
    if r1 < 0:
        # Most rows did not merge and keep their column order: one pass writes them (and finds whether they
        # changed); a row whose order changed is written again below.
        prev = -1
        k = 0
        for e in range(lo0, hi0):
            c = cmap[col[e]]
            if c < 0 or c == u:
                changed = True
                continue
            if c <= prev:
                break
            prev = c
            out_col[at + k] = c
            out_s[at + k] = s[e]
            out_m[at + k] = m[e]
            out_q[at + k] = q[e]
            if src[c, 1] < 0:
                out_lb[at + k] = lb[e]
            else:
                excess = carried_excess(lb[e]) if carry else 0.0
                out_lb[at + k] = -excess * (1.0 - _REL) - _TINY if excess > 0.0 else -np.inf
                changed = True
            k += 1
        else:
            return k, changed
    changed = True  # merged, or its columns' order changed (so one of them merged)
    lo1, hi1 = (starts[r1], ends[r1]) if r1 >= 0 else (0, 0)
    size = (hi0 - lo0) + (hi1 - lo1)
    cols = np.empty(size, dtype=np.int64)
    pos = np.empty(size, dtype=np.int64)
    k = 0
    for lo, hi in ((lo0, hi0), (lo1, hi1)):
        for e in range(lo, hi):
            c = cmap[col[e]]
            if c < 0 or c == u:
                continue
            cols[k] = c
            pos[k] = e
            k += 1
    order = np.argsort(cols[:k], kind="mergesort")
    out = 0
    t = 0
    while t < k:
        # One group: the old entries that become new entry (u, c).
        c = cols[order[t]]
        first = t
        excess = 0.0
        out_s[at + out] = 0.0
        out_m[at + out] = 0.0
        out_q[at + out] = 0.0
        while t < k and cols[order[t]] == c:
            e = pos[order[t]]
            out_s[at + out] += s[e]
            out_m[at + out] += m[e]
            out_q[at + out] += q[e]
            excess += carried_excess(lb[e])
            t += 1
        out_col[at + out] = c
        if r1 < 0 and src[c, 1] < 0:
            out_lb[at + out] = lb[pos[order[first]]]  # neither cluster merged: one old entry, its bound holds
        elif carry and excess > 0.0:  # an excess of 0 bounds nothing beyond the radius bound
            out_lb[at + out] = -excess * (1.0 - _REL) - _TINY  # shaved: the sum rounds
        else:
            out_lb[at + out] = -np.inf
        out += 1
    return out, changed


@njit(parallel=True, cache=True, nogil=True)
def merge_rows(
    starts, ends, col, s, m, q, lb, touched, parent, new_id, n_new, carry, out_col, out_s, out_m, out_q, out_lb
):  # pragma: no cover - compiled
    # Every new row is merged once, into room for its two source rows (so each row is sorted once, not once to
    # count and again to write), in the out_* arrays (the other of two sets, reused every round: fresh arrays
    # cost page faults on ~1.6 GB a round at 10^6 points). The rows are left where they were written, with gaps
    # after the rows that dropped entries: packing them into plain CSR cost a second copy of the whole graph every
    # round. Returns (starts, ends, dirty).
    n_old = starts.size
    src = np.full((n_new, 2), -1, dtype=np.int64)
    cmap = np.empty(n_old, dtype=np.int64)
    for i in range(n_old):
        u = new_id[parent[i]]
        cmap[i] = u
        if u >= 0:
            src[u, 0 if parent[i] == i else 1] = i
    room = np.zeros(n_new + 1, dtype=np.int64)
    for u in range(n_new):
        r0, r1 = src[u, 0], src[u, 1]
        extra = ends[r1] - starts[r1] if r1 >= 0 else 0
        room[u + 1] = room[u] + ends[r0] - starts[r0] + extra
    if room[-1] > out_col.size:
        raise ValueError("merge_rows: the output arrays are too small")
    new_starts = room[:-1].copy()
    new_ends = np.empty(n_new, dtype=np.int64)
    dirty = np.zeros(n_new, dtype=np.bool_)
    for u in prange(n_new):
        length, changed = merge_row(
            u, src, starts, ends, col, s, m, q, lb, cmap, carry, out_col, out_s, out_m, out_q, out_lb, room[u]
        )
        new_ends[u] = room[u] + length
        # A row stays clean if it did not merge, no mirror's completion changed it, and none of its columns merged
        # or was dropped.
        dirty[u] = changed or touched[src[u, 0]]
    return new_starts, new_ends, dirty


@njit(cache=True, nogil=True)
def entry_arrays(total):  # pragma: no cover - compiled
    # Room for `total` graph entries: column, s, m, q and the kept refined bound lb.
    return np.empty(total, dtype=np.int32), np.empty(total), np.empty(total), np.empty(total), np.empty(total)


@njit(cache=True, nogil=True)
def keep_rows(x, kept):  # pragma: no cover - compiled
    # x[:kept.size] = x[kept] in place (kept is increasing, so a row is read before it is overwritten).
    for u in range(kept.size):
        if kept[u] != u:
            x[u] = x[kept[u]]
    return x[: kept.size]


@njit(cache=True, nogil=True)
def spread(points, mean, label, vsum, sizes, merged, rho):  # pragma: no cover - compiled
    # Exact largest distance from each merged cluster's centroid to its points (the diameter bound M). The points
    # are centred here, on the fly (the same rounding as a centred copy, without its 8 d bytes per point).
    d = points.shape[1]
    for c in range(merged.size):
        if merged[c]:
            rho[c] = 0.0
    for p in range(label.size):
        c = label[p]
        if c >= 0 and merged[c]:
            acc = 0.0
            for t in range(d):
                diff = (points[p, t] - mean[t]) - vsum[c, t] / sizes[c]
                acc += diff * diff
            r = np.sqrt(acc)
            if r > rho[c]:
                rho[c] = r


def rac_csr(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    distance: np.ndarray,
    st: Any,
    *,
    target_clusters: int | None,
    ceiling: float,
    plan_merges: Any,
    next_stage: Any,
    progress: bool = False,
    stats: dict[str, Any] | None = None,
) -> tuple[np.ndarray, Any, int]:
    """RAC rounds with the compiled kernels, from the first round's state ``st``
    (:func:`cmal.graph_hac.start_state`); returns ``(merges, final_state, entries_left)``.

    Same merges as the numpy rounds of :func:`cmal.graph_hac.rac` (which calls this when numba is installed).
    ``plan_merges`` and ``next_stage`` are :mod:`cmal.graph_hac`'s (passed in: this module must not import it,
    which imports this one).
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    mode = {"average": MODE_AVERAGE, "graph": MODE_GRAPH, "edges": MODE_EDGES}[st.linkage]
    cosine = st.metric == "cosine"
    a = np.ascontiguousarray(a, dtype=np.int64)
    b = np.ascontiguousarray(b, dtype=np.int64)
    distance = np.ascontiguousarray(distance, dtype=np.float64)
    indptr, col, s, m, q = csr_from_edges(n, a, b, distance, st.weights)
    starts, ends = indptr[:-1].copy(), indptr[1:].copy()  # rows may have gaps after the first round (merge_rows)
    live = int(col.size)  # entries in the rows, gaps left out
    del indptr
    lb = np.full(col.size, -np.inf)  # each entry's refined bound, kept while neither of its clusters changes
    # The second set of entry arrays: merge_rows writes the next round's graph there and the two sets swap; while
    # the rows look for their nearest, its arrays are the scratch nearest_rows needs (viewed as the types it uses).
    spare = entry_arrays(col.size)
    if mode == MODE_AVERAGE:
        points = np.ascontiguousarray(st.points, dtype=np.float64)
        # Per-cluster sums of the centred points and of their squared norms (centring keeps the cancellation
        # in the exact sum of squares small), and each cluster's radius around its centroid.
        mean = points.mean(axis=0) if not cosine else np.zeros(points.shape[1])
        vsum = points - mean  # centred; weighted below, in place (one n x d array, not two)
        sqsum = np.einsum("ij,ij->i", vsum, vsum) * st.weights
        vsum *= st.weights[:, None]
        rho = np.zeros(n)
    else:
        points = vsum = np.zeros((0, 0))
        mean = np.zeros(0)
        sqsum = rho = np.zeros(0)
    rep = np.arange(n, dtype=np.int64)
    merges: list[np.ndarray] = []
    total = n
    completed = refined = visits = 0
    evaluations = 0.0
    seconds = {"nearest": 0.0, "merge": 0.0, "plan": 0.0, "sums": 0.0}
    t_start = time.perf_counter()
    rounds = 0
    bar = tqdm(desc="RAC rounds", unit="round", disable=not progress, leave=False)
    # numba's threads run the rows; the BLAS calls inside (pair_sums' matrix products) are held to one thread to avoid
    # oversubscribing the cores.
    # Each row's last result, and whether it must be found again (see nearest_rows).
    nn = np.full(n, -1, dtype=np.int64)
    nn_link = np.full(n, np.inf)
    exact_top = np.zeros(n, dtype=np.bool_)
    dirty = np.ones(n, dtype=np.bool_)
    with threadpool_limits(1):
        while live:
            done = np.zeros(col.size, dtype=np.bool_)
            if mode == MODE_AVERAGE:
                members, mstart = members_of(st.label, st.n_clusters)
            else:
                members = np.zeros(0, dtype=np.int64)
                mstart = np.zeros(st.n_clusters + 1, dtype=np.int64)
            visits += int((ends - starts)[dirty].sum())
            t0 = time.perf_counter()
            # Rows cost very different amounts (a big cluster completing a sum with another big one), so prange
            # hands them out in small chunks instead of one static half per thread.
            with parallel_chunksize(16):
                n_done, n_eval, n_ref = nearest_rows(
                    np.arange(st.n_clusters),
                    starts,
                    ends,
                    col,
                    s,
                    m,
                    q,
                    lb,
                    st.sizes,
                    st.radius,
                    vsum,
                    sqsum,
                    rho,
                    st.threshold,
                    mode,
                    st.big_d,
                    cosine,
                    points,
                    st.weights,
                    members,
                    mstart,
                    done,
                    nn,
                    nn_link,
                    exact_top,
                    dirty,
                    spare[1],  # link: float64
                    spare[0].view(np.uint8),  # state: 4 bytes of an int32 column each
                    spare[3].view(np.int64),  # heap: 8 bytes of a float64 each
                )
            completed += int(n_done)
            refined += int(n_ref)
            seconds["nearest"] += time.perf_counter() - t0
            evaluations += float(n_eval)
            touched = np.zeros(st.n_clusters, dtype=np.bool_)  # rows whose entries a mirror's completion changed
            if n_done:
                sync_mirrors(starts, ends, col, s, m, q, lb, done, touched)
            t0 = time.perf_counter()
            rows = np.flatnonzero(nn >= 0)
            planned = plan_merges(st, rep, rows, nn[rows], nn_link[rows])
            seconds["plan"] += time.perf_counter() - t0
            if planned is None:
                if next_stage(st, total, target_clusters, ceiling):
                    # A higher threshold changes only the rows that stopped at a bound above the old one, and
                    # of those only the ones whose bound is now at or below the new threshold: the others would
                    # start from the same links (completed sums and refined bounds are kept) and stop at once.
                    dirty = touched | (~exact_top & (nn_link <= st.threshold))
                    continue
                break
            found, nxt, rep, parent, new_id = planned
            total -= len(found)
            merges.append(found)
            t0 = time.perf_counter()
            if mode == MODE_AVERAGE:
                moved = np.flatnonzero(parent != np.arange(parent.size))
                vsum[parent[moved]] += vsum[moved]
                sqsum[parent[moved]] += sqsum[moved]
                alive = new_id >= 0
                merged = np.zeros(st.n_clusters, dtype=np.bool_)
                merged[parent[moved]] = True
                sqsum, rho, merged = sqsum[alive], rho[alive], merged[alive]
                vsum = keep_rows(vsum, np.flatnonzero(alive))  # in place: a fresh copy cost page faults on 512 MB
                if not cosine:
                    spread(points, mean, nxt.label, vsum, nxt.sizes, merged, rho)
            seconds["sums"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            del done
            # The graph is held twice, as two sets of entry arrays sized for the first round: 72 bytes per entry
            # (36 per set: column, s, m, q and the kept bound lb), as at the first round's peak when each round
            # allocated its own; keeping the second set from then on measured 5.44 against 5.17 GiB for the whole
            # process at 10^6 points (benchmarks/rac_cached.py).
            # Entries of merged clusters carry their parts' bounds (merge_row), for average linkage only.
            starts, ends, dirty = merge_rows(
                starts, ends, col, s, m, q, lb, touched, parent, new_id, nxt.n_clusters, mode == MODE_AVERAGE, *spare
            )
            spare, (col, s, m, q, lb) = (col, s, m, q, lb), spare
            live = int((ends - starts).sum())
            # Clean rows keep their result, with the nearest's id in the new numbering.
            kept = np.flatnonzero(new_id >= 0)
            cmap = new_id[parent]
            nn_kept = nn[kept]
            nn = np.where(nn_kept >= 0, cmap[np.maximum(nn_kept, 0)], -1)
            nn_link, exact_top = nn_link[kept], exact_top[kept]
            seconds["merge"] += time.perf_counter() - t0
            st = nxt
            rounds += 1
            bar.update(1)
            bar.set_postfix(clusters=total, edges=live // 2, threshold=f"{st.threshold:.4g}")
    bar.close()
    seconds["total"] = time.perf_counter() - t_start
    if stats is not None:
        stats.update(
            rounds=rounds,
            completed_pairs=completed,
            refined_bounds=refined,
            entry_visits=visits,
            distance_evaluations=evaluations,
            seconds=seconds,
        )
    out = np.concatenate(merges) if merges else np.empty((0, 4))
    return out, st, live


def nearest_sorted(edges: Any, st: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """:func:`cmal.graph_hac.nearest` with the compiled row kernel, for a part of the edge list sorted by
    (row, column), as the Dask backend holds it: same ``(rows, nn, nn_link, edges)``.

    Completed sums are written to the entry only (its mirror may sit in another part, which completes it
    when it needs it); the refined bound is not used (it needs per-cluster sums of the points, which a
    part would have to recompute every round), so the radius bound alone orders the completions.
    """
    r, c, s, m = edges
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]]) if r.size else np.empty(0, dtype=np.int64)
    rows = r[starts]
    ends = np.append(starts[1:], r.size).astype(np.int64) if r.size else np.empty(0, dtype=np.int64)
    s = np.array(s, dtype=np.float64)  # written in place
    m = np.array(m, dtype=np.float64)
    mode = {"average": MODE_AVERAGE, "graph": MODE_GRAPH, "edges": MODE_EDGES}[st.linkage]
    if mode == MODE_AVERAGE:
        members, mstart = members_of(st.label, st.n_clusters)
        points = np.ascontiguousarray(st.points, dtype=np.float64)
    else:
        members, mstart = np.zeros(0, dtype=np.int64), np.zeros(st.n_clusters + 1, dtype=np.int64)
        points = np.zeros((0, 0))
    n_rows = rows.size
    nn = np.full(n_rows, -1, dtype=np.int64)
    nn_link = np.full(n_rows, np.inf)
    nearest_rows(
        rows.astype(np.int64),
        starts.astype(np.int64),
        ends,
        np.ascontiguousarray(c, dtype=np.int32),
        s,
        m,
        np.zeros(r.size),
        np.full(r.size, -np.inf),
        st.sizes,
        st.radius,
        np.zeros((0, 0)),
        np.zeros(0),
        np.zeros(0),
        st.threshold,
        mode,
        st.big_d,
        st.metric == "cosine",
        points,
        st.weights,
        members,
        mstart,
        np.zeros(r.size, dtype=np.bool_),
        nn,
        nn_link,
        np.zeros(n_rows, dtype=np.bool_),
        np.ones(n_rows, dtype=np.bool_),
        np.empty(r.size),
        np.empty(r.size, dtype=np.uint8),
        np.empty(r.size, dtype=np.int64),
    )
    return rows, nn, nn_link, (r, c, s, m)
