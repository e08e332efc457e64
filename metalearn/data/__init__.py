"""Omniglot cache, named splits and the on-device episode sampler.

Importing this package never imports TensorFlow or tensorflow-datasets; only
building the cache (``build_cache``, ``rebuild_cache``, and ``ensure_cache``
when the cache is missing or damaged) does.
"""

from metalearn.data.episodes import fixed_tasks
from metalearn.data.episodes import rotate_classes
from metalearn.data.episodes import sample_from_pool
from metalearn.data.episodes import sample_tasks
from metalearn.data.omniglot import CACHE_DIR_ENV
from metalearn.data.omniglot import CacheError
from metalearn.data.omniglot import CachedSplit
from metalearn.data.omniglot import ensure_cache
from metalearn.data.omniglot import is_cache_complete
from metalearn.data.omniglot import load_cached
from metalearn.data.omniglot import resolve_cache_dir
from metalearn.data.omniglot import verify_cache
from metalearn.data.omniglot_build import build_cache
from metalearn.data.omniglot_build import rebuild_cache
from metalearn.data.sources import NoSourceError
from metalearn.data.sources import OMNIGLOT_DIR_ENV
from metalearn.data.sources import OMNIGLOT_URL_ENV
from metalearn.data.sources import TFDS_SPLITS
from metalearn.data.sources import resolve_omniglot_dir
from metalearn.data.sources import resolve_tfds_data_dir
from metalearn.data.sources import shared_omniglot_dir
from metalearn.data.splits import SPLIT_NAMES
from metalearn.data.splits import SPLIT_SIZES
from metalearn.data.splits import Splits
from metalearn.data.splits import load_splits
from metalearn.data.splits import split_labels
