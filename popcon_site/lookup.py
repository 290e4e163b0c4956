"""The warm half of the index: which directories, the cache, the lookup.

It lives in :mod:`popcon_site.reporter`, the one module the exit path loads
besides :mod:`popcon_site.wire` (each module imported at exit costs about
0.3M instructions before its first line runs).  Its names are re-exported
here; building entries is :mod:`popcon_site.index`.
"""

from popcon_site.reporter import (
    CACHE_TAG,
    FORMAT,
    READ_LIMIT,
    SHARDS,
    Index,
    cache_locations,
    directory_mtimes,
    load,
    private_dir_ok,
    private_reason,
    read_cache,
    read_regular,
    search_dirs,
    shard_of,
    valid_entry,
)

__all__ = [
    "CACHE_TAG",
    "FORMAT",
    "SHARDS",
    "Index",
    "cache_locations",
    "load",
    "private_reason",
    "read_cache",
    "search_dirs",
    "shard_of",
]
