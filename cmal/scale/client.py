"""Getting a Dask client: a LocalCluster by default, any existing client otherwise."""

from __future__ import annotations

from typing import Any

__all__ = ["connect"]


def _dask() -> Any:
    try:
        import dask.distributed as dd
    except ImportError as exc:
        raise ImportError("the Dask backend needs dask.distributed: pip install 'cmal[scale]'.") from exc
    return dd


def connect(client: Any = None, *, n_workers: int = 2, threads_per_worker: int = 1, **cluster_kwargs: Any) -> Any:
    """A ``dask.distributed.Client`` to run cmal's large-pool steps on.

    Parameters
    ----------
    client : dask.distributed.Client, optional
        Use this client as is (a cluster started any way Dask supports). Default: start a ``LocalCluster``.
    n_workers, threads_per_worker : int
        Size of the local cluster (ignored with ``client``). One thread per worker process suits numpy/BLAS
        work that already uses a core fully.
    **cluster_kwargs
        More ``LocalCluster`` options, e.g. ``memory_limit="4GiB"`` or ``dashboard_address=":8787"``.

    Returns
    -------
    dask.distributed.Client
    """
    dd = _dask()
    if client is not None:
        if not isinstance(client, dd.Client):
            raise ValueError(f"client must be a dask.distributed.Client, got {type(client).__name__}.")
        return client
    from cmal._validation import check_int

    check_int(n_workers, "n_workers", minimum=1)
    check_int(threads_per_worker, "threads_per_worker", minimum=1)
    # No dashboard by default: it needs bokeh and a free port; pass dashboard_address to get one.
    cluster_kwargs.setdefault("dashboard_address", None)
    cluster = dd.LocalCluster(
        n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True, **cluster_kwargs
    )
    return dd.Client(cluster)


def resolve(client: Any) -> Any:
    """The given client, or the current default client, or a new local one."""
    if client is not None:
        return connect(client)
    dd = _dask()
    try:
        return dd.get_client()
    except ValueError:
        return connect()
