"""Datasets by name, the verified uint8 caches, and the on-device sampler.

``register`` / ``get`` hold the datasets (``config.dataset``); the built-in
ones register on import: the Omniglot splits (``tfds``, ``lake``,
``vinyals``, ``mamlpp``), ``mini_imagenet``, ``folders`` (any tree of class
folders), ``tfds_images`` (a TFDS dataset by name), ``cifar_fs``,
``fc100``, ``cub``, ``tiered_imagenet``, ``sinusoid`` and ``synthetic``;
``augment`` transforms training tasks on the device (``config.augment``).
A new image dataset is one file calling ``register(image_dataset(...))``
(docs/data.md). Classes of unequal size are ``RaggedClasses``;
``from_arrays(x, y)`` makes them from labelled numpy arrays.

Importing this package never imports TensorFlow or tensorflow-datasets; only
building the Omniglot cache (``build_cache``, ``rebuild_cache``, and
``ensure_cache`` when the cache is missing or damaged) does.
"""

from metalearn.data import arrays
from metalearn.data import augment
from metalearn.data import cache
from metalearn.data import cub
from metalearn.data import episodes
from metalearn.data import folders
from metalearn.data import images
from metalearn.data import miniimagenet
from metalearn.data import omniglot
from metalearn.data import ragged
from metalearn.data import registry
from metalearn.data import shapes
from metalearn.data import sinusoid
from metalearn.data import synthetic
from metalearn.data import tfds_images
from metalearn.data import tiered_imagenet
from metalearn.data.arrays import ArrayEpisodes
from metalearn.data.arrays import from_arrays
from metalearn.data.cache import CACHE_DIR_ENV
from metalearn.data.cache import CacheError
from metalearn.data.cache import NoSourceError
from metalearn.data.episodes import fixed_tasks
from metalearn.data.episodes import rotate_classes
from metalearn.data.episodes import sample_from_pool
from metalearn.data.episodes import sample_tasks
from metalearn.data.images import Splits
from metalearn.data.images import image_dataset
from metalearn.data.omniglot.access import ensure_cache
from metalearn.data.omniglot.access import load_cached
from metalearn.data.omniglot.build import build_cache
from metalearn.data.omniglot.build import rebuild_cache
from metalearn.data.omniglot.sources import OMNIGLOT_DIR_ENV
from metalearn.data.omniglot.sources import OMNIGLOT_URL_ENV
from metalearn.data.omniglot.sources import TFDS_SPLITS
from metalearn.data.omniglot.sources import resolve_omniglot_dir
from metalearn.data.omniglot.sources import resolve_tfds_data_dir
from metalearn.data.omniglot.sources import shared_omniglot_dir
from metalearn.data.omniglot.splits import SPLIT_NAMES
from metalearn.data.omniglot.splits import SPLIT_SIZES
from metalearn.data.omniglot.splits import load_splits
from metalearn.data.omniglot.splits import split_labels
from metalearn.data.omniglot.store import CachedSplit
from metalearn.data.omniglot.store import is_cache_complete
from metalearn.data.omniglot.store import resolve_cache_dir
from metalearn.data.omniglot.store import verify_cache
from metalearn.data.ragged import RaggedClasses
from metalearn.data.registry import DataParts
from metalearn.data.registry import Dataset
from metalearn.data.registry import get
from metalearn.data.registry import names
from metalearn.data.registry import register
