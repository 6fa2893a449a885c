"""Datasets: named, sharded data, each shard with a size, a content hash and its replicas.

A replica is a path on a node's local disk (``{"node": NAME, "path": PATH}``) or a URL
any fsspec filesystem reads (``{"url": URL}``). ``insitu.dataset("events").shards()``
gives the shard descriptors to map a step over; inside the step,
``insitu.shard_path(shard)`` returns a local path to the shard's bytes: the replica on
this node when there is one, otherwise a copy fetched once into this node's shard cache
(counted as bytes moved). Every read is journaled with the attempt.
"""

from insitu.datasets._read import shard_path
from insitu.datasets._registry import Dataset, add, dataset, list_datasets, shards_in

__all__ = ["Dataset", "add", "dataset", "list_datasets", "shard_path", "shards_in"]
