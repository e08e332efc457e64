"""Omniglot cache, named splits and the on-device episode sampler.

Importing this package never imports TensorFlow or tensorflow-datasets; only
``build_cache`` (and ``ensure_cache`` when the cache is missing) does.
"""

from metalearn.data.episodes import fixed_tasks
from metalearn.data.episodes import rotate_classes
from metalearn.data.episodes import sample_from_pool
from metalearn.data.episodes import sample_tasks
from metalearn.data.omniglot import CachedSplit
from metalearn.data.omniglot import SPLIT_NAMES
from metalearn.data.omniglot import SPLIT_SIZES
from metalearn.data.omniglot import Splits
from metalearn.data.omniglot import TFDS_SPLITS
from metalearn.data.omniglot import build_cache
from metalearn.data.omniglot import ensure_cache
from metalearn.data.omniglot import is_cache_complete
from metalearn.data.omniglot import load_cached
from metalearn.data.omniglot import load_splits
from metalearn.data.omniglot import resolve_cache_dir
from metalearn.data.omniglot import resolve_omniglot_dir
from metalearn.data.omniglot import shared_omniglot_dir
from metalearn.data.omniglot import split_labels
