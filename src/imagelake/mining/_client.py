"""Where mining runs: a Dask scheduler by address, or a LocalCluster sized to the machine.

The address is, first to last: the ``scheduler`` argument, the ``scheduler`` setting
(``IMAGELAKE_SCHEDULER`` or ``imagelake.toml``), Dask's own ``scheduler-address``
(``DASK_SCHEDULER_ADDRESS``). Without one, a LocalCluster of worker processes with one
thread each, one per core (or the ``workers`` setting). A site's Slurm/PBS
(dask-jobqueue), dask-gateway or Kubernetes cluster is reached by its scheduler address,
or by handing an existing :class:`distributed.Client` to :func:`client_for`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from imagelake.config import get_settings

__all__ = ["client_for", "default_workers", "get_client", "scheduler_address"]


def default_workers() -> int:
    """Worker processes of a LocalCluster: the ``workers`` setting, else the usable cores."""
    configured = get_settings().workers
    if configured:
        return int(configured)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def scheduler_address(scheduler: str | None = None) -> str | None:
    """The scheduler to use: the argument, the setting, ``DASK_SCHEDULER_ADDRESS``; or None."""
    if scheduler:
        return scheduler
    configured = get_settings().scheduler
    if configured:
        return configured
    import dask

    found = dask.config.get("scheduler-address", None) or os.environ.get("DASK_SCHEDULER_ADDRESS")
    return str(found) if found else None


def get_client(scheduler: str | None = None, *, n_workers: int | None = None) -> Any:
    """A :class:`distributed.Client`: to ``scheduler`` (see :func:`scheduler_address`),
    else to a new LocalCluster of ``n_workers`` processes (default: one per core).

    The caller closes it (``client.close()``); closing a client made without an address
    also closes its LocalCluster. :func:`client_for` does both for you.
    """
    from distributed import Client

    address = scheduler_address(scheduler)
    if address:
        return Client(address)
    return Client(
        n_workers=n_workers or default_workers(),
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # any free port: never clash with another cluster
        silence_logs=logging.ERROR,
    )


@contextmanager
def client_for(
    scheduler: str | None = None, *, client: Any = None, n_workers: int | None = None
) -> Iterator[Any]:
    """A client for one mining run; closed afterwards only if this made it.

    ``client`` (an existing :class:`distributed.Client`, e.g. of a dask-jobqueue or
    dask-gateway cluster) is used as it is and left open.
    """
    if client is not None:
        yield client
        return
    made = get_client(scheduler, n_workers=n_workers)
    try:
        yield made
    finally:
        made.close()
