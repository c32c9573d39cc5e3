"""Building an index across many machines: blocks of files decoded and embedded on a Ray cluster, written
as shards (parquet exports) to shared storage, merged into the index on disk by `indexer import`.

`ray` is imported only when a distributed build runs (`pip install "resound[ray]"`).
"""

from indexer.distributed.ray_build import (
    DistributedBuildError,
    RayBuildReport,
    RayOptions,
    build_index_on_ray,
)

__all__ = ["DistributedBuildError", "RayBuildReport", "RayOptions", "build_index_on_ray"]
