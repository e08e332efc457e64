"""Omniglot: its sources, the verified uint8 cache, and the named splits.

Modules, each importing only those listed before it:

* ``sources``: where the cache comes from (TFDS dataset, zips, download).
* ``store``: the cache on disk (paths, format, reading, verifying, writing).
* ``build``: TFDS -> cache (the only user of TensorFlow, inside functions).
* ``access``: ``ensure_cache`` and ``load_cached`` (reuse, or rebuild).
* ``splits``: the named splits, each a registered dataset.
"""

from metalearn.data.omniglot import access
from metalearn.data.omniglot import build
from metalearn.data.omniglot import sources
from metalearn.data.omniglot import splits
from metalearn.data.omniglot import store
from metalearn.data.omniglot.access import ensure_cache
from metalearn.data.omniglot.access import load_cached
from metalearn.data.omniglot.build import build_cache
from metalearn.data.omniglot.build import rebuild_cache
from metalearn.data.omniglot.sources import OMNIGLOT_DIR_ENV
from metalearn.data.omniglot.sources import OMNIGLOT_URL_ENV
from metalearn.data.omniglot.sources import TFDS_SPLITS
from metalearn.data.omniglot.sources import resolve_omniglot_dir
from metalearn.data.omniglot.splits import SPLIT_NAMES
from metalearn.data.omniglot.splits import SPLIT_SIZES
from metalearn.data.omniglot.splits import load_splits
from metalearn.data.omniglot.splits import split_labels
from metalearn.data.omniglot.store import CACHE_FORMAT_VERSION
from metalearn.data.omniglot.store import CachedSplit
from metalearn.data.omniglot.store import cache_path
from metalearn.data.omniglot.store import is_cache_complete
from metalearn.data.omniglot.store import resolve_cache_dir
from metalearn.data.omniglot.store import verify_cache
