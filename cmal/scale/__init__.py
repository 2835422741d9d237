"""The Dask backend: embedding, margins, kNN graph and graph HAC spread over a Dask cluster.

Optional (``pip install 'cmal[scale]'``). One call gives a client: :func:`~cmal.scale.client.connect` starts a
``LocalCluster`` on this machine by default, or takes any existing ``dask.distributed.Client`` (Kubernetes, YARN,
SLURM via dask-jobqueue...) so the same notebook runs on a laptop and on a cluster without code changes.

The results equal the single-machine path's (:mod:`cmal.embed`, :mod:`cmal.uncertainty`,
:mod:`cmal.graph_hac`): the same functions run on partitions.

Examples
--------
>>> import numpy as np
>>> from cmal import scale
>>> client = scale.connect(n_workers=2)                       # doctest: +SKIP
>>> tree = scale.graph_linkage_tree(emb, k=30, client=client)  # doctest: +SKIP
"""

from __future__ import annotations

from cmal.scale.client import connect
from cmal.scale.graph import graph_linkage_tree, knn_graph, knn_partitions, rac
from cmal.scale.pool import embed_pool, margins, predict_pool

__all__ = [
    "connect",
    "embed_pool",
    "predict_pool",
    "margins",
    "knn_graph",
    "knn_partitions",
    "rac",
    "graph_linkage_tree",
]
