"""Omniglot: built once with tensorflow-datasets, then read from a numpy cache.

The build (``build_cache``) verifies the four original zips, runs TFDS's
``omniglot`` builder offline on them and converts every split into one
``<split>.npz`` file under the cache dir: ``images`` uint8
``[num_classes, 20, 28, 28]`` in {0, 1} (ink = 1) plus class metadata.
Everything else here (``load_cached``, ``load_splits``) reads only the cache:
TensorFlow and tensorflow-datasets are imported inside the build, never at
module import, so training machines need neither.
"""

import contextlib
import hashlib
import io
import os
from pathlib import Path
import shutil
import tempfile
from typing import Mapping, NamedTuple
import uuid
import zipfile
import zlib

import numpy as np
from tqdm import tqdm

from metalearn.data import episodes

# TFDS split name -> original zip name (all four are needed for any build).
ZIP_NAMES = {
    "train": "images_background.zip",
    "test": "images_evaluation.zip",
    "small1": "images_background_small1.zip",
    "small2": "images_background_small2.zip",
}
TFDS_SPLITS = tuple(ZIP_NAMES)
# Accepted sha256 per zip: the ones tensorflow-datasets registers for the
# original archives, and the reproducible offline rebuilds described in
# shared/data/omniglot/README.md (same PNG bytes, different zip container).
KNOWN_SHA256 = {
    "images_background.zip": {
        "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640":
            "original (registered by tensorflow-datasets)",
        "7a4cae547f16207901bd3acaabd866c1dbbef4d559dff26d797dbc6423a64a1e":
            "offline rebuild (same PNG bytes)",
    },
    "images_evaluation.zip": {
        "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee":
            "original (registered by tensorflow-datasets)",
        "d84af890b3ea334eca90f1cb04c6111603a1b620d66b82f86414b8707fbd0e8d":
            "offline rebuild (same PNG bytes)",
    },
    "images_background_small1.zip": {
        "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4":
            "original (registered by tensorflow-datasets)",
    },
    "images_background_small2.zip": {
        "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f":
            "original (registered by tensorflow-datasets)",
    },
}
OMNIGLOT_DIR_ENV = "METALEARN_OMNIGLOT_DIR"
CACHE_DIR_ENV = "METALEARN_CACHE_DIR"
NUM_DRAWINGS = 20
IMAGE_SIZE = 28
# Threshold on the Lanczos-resampled ink coverage in [0, 1]. Over all 32,460
# drawings, 0.4 breaks a stroke in 2 (0.5: in 20) and loses none; strokes get
# about 15% more ink pixels than at 105x105. See docs/data.md.
INK_THRESHOLD = 0.4
CACHE_FORMAT_VERSION = 1


class CachedSplit(NamedTuple):
  """One TFDS split as stored in the cache, classes sorted by label.

  Attributes:
    images: [C, 20, 28, 28] uint8 in {0, 1}, ink = 1.
    labels: [C] int32 TFDS label (0..963 background, 964..1622 evaluation).
    alphabets: [C] str alphabet name.
    characters: [C] int32 index of the character within its alphabet (TFDS
      ``alphabet_char_id``; 0-based, folder ``characterNN`` is ``NN - 1``).
    ink_105: [C, 20] float32 ink fraction of each 105x105 original (checks).
  """
  images: np.ndarray
  labels: np.ndarray
  alphabets: np.ndarray
  characters: np.ndarray
  ink_105: np.ndarray


def shared_omniglot_dir() -> Path:
  """The repo-relative default zip dir: ``<repo>/../shared/data/omniglot``."""
  return Path(__file__).resolve().parents[3] / "shared" / "data" / "omniglot"


def resolve_omniglot_dir(omniglot_dir: str | os.PathLike | None = None
                        ) -> Path | None:
  """The zip dir: the argument, else $METALEARN_OMNIGLOT_DIR, else the shared
  dir if it exists, else None."""
  if omniglot_dir is not None:
    return Path(omniglot_dir).expanduser()
  if os.environ.get(OMNIGLOT_DIR_ENV):
    return Path(os.environ[OMNIGLOT_DIR_ENV]).expanduser()
  shared = shared_omniglot_dir()
  return shared if shared.is_dir() else None


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
  """The cache dir: the argument, else $METALEARN_CACHE_DIR, else
  ``~/.cache/metalearn/omniglot``."""
  if cache_dir is None:
    cache_dir = os.environ.get(CACHE_DIR_ENV) or "~/.cache/metalearn/omniglot"
  return Path(cache_dir).expanduser()


def cache_path(split: str, cache_dir: str | os.PathLike | None = None) -> Path:
  """Path of one split's ``.npz`` file."""
  if split not in ZIP_NAMES:
    raise ValueError(f"split={split!r} is not a TFDS Omniglot split; valid: "
                     f"{', '.join(TFDS_SPLITS)}")
  return resolve_cache_dir(cache_dir) / f"{split}.npz"


def is_cache_complete(cache_dir: str | os.PathLike | None = None) -> bool:
  """Whether all four split files exist with the current format version."""
  for split in TFDS_SPLITS:
    path = cache_path(split, cache_dir)
    try:
      with np.load(path, allow_pickle=False) as z:
        if int(z["format_version"]) != CACHE_FORMAT_VERSION:
          return False
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
      return False  # Missing or unreadable: rebuild.
  return True


def load_cached(split: str, cache_dir: str | os.PathLike | None = None
               ) -> CachedSplit:
  """Reads one split from the cache (numpy only, no TensorFlow).

  Args:
    split: one of ``TFDS_SPLITS`` ("train", "test", "small1", "small2").
    cache_dir: cache dir; see ``resolve_cache_dir``.

  Returns:
    The split's ``CachedSplit``; ``images`` is [C, 20, 28, 28] uint8.
  """
  path = cache_path(split, cache_dir)
  if not path.is_file():
    raise FileNotFoundError(
        f"No Omniglot cache file {path}. Build the cache once with "
        f"`python -m metalearn.data.prepare --omniglot_dir=DIR "
        f"--cache_dir={path.parent}` or `metalearn.data.ensure_cache()`.")
  with np.load(path, allow_pickle=False) as z:
    if int(z["format_version"]) != CACHE_FORMAT_VERSION:
      raise ValueError(
          f"{path} has cache format {int(z['format_version'])}, expected "
          f"{CACHE_FORMAT_VERSION}; rebuild it with "
          "`python -m metalearn.data.prepare --overwrite`.")
    return CachedSplit(*(z[f] for f in CachedSplit._fields))


def sha256_file(path: Path) -> str:
  """Hex sha256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _missing_zips_error(where: Path | None,
                        cache_dir: Path) -> FileNotFoundError:
  names = ", ".join(ZIP_NAMES.values())
  where = (f"in {where}" if where is not None else
           f"(no dir given, ${OMNIGLOT_DIR_ENV} unset and the default "
           f"{shared_omniglot_dir()} does not exist)")
  return FileNotFoundError(
      f"No complete Omniglot cache in {cache_dir} and the Omniglot zips were "
      f"not found {where}. Expected the four original files: {names}. Pass "
      f"the directory holding them with --omniglot_dir=DIR "
      f"(python -m metalearn.data.prepare), the environment variable "
      f"{OMNIGLOT_DIR_ENV}=DIR, or omniglot_dir=DIR; or point --cache_dir / "
      f"{CACHE_DIR_ENV} at an existing cache.")


def verify_zips(omniglot_dir: Path, cache_dir: Path, *,
                known_sha256: Mapping[str, Mapping[str, str]] = KNOWN_SHA256,
                progress: bool = False) -> dict[str, tuple[int, str]]:
  """Checks that the four zips exist, have a known sha256 and are readable.

  Returns:
    {zip name: (size in bytes, sha256)} of the files actually present.
  """
  paths = {name: omniglot_dir / name for name in ZIP_NAMES.values()}
  if not all(p.is_file() for p in paths.values()):
    raise _missing_zips_error(omniglot_dir, cache_dir)
  verified = {}
  for name, path in tqdm(paths.items(), desc="verify zips",
                         disable=not progress):
    sha = sha256_file(path)
    known = known_sha256.get(name, {})
    if sha not in known:
      listed = "; ".join(f"{k} ({v})" for k, v in known.items()) or "none"
      raise ValueError(
          f"{path} has sha256 {sha}, which is not a known checksum for {name}."
          f" Known: {listed}. Replace it with the original file.")
    _check_archive(path)
    verified[name] = (path.stat().st_size, sha)
  return verified


def _check_archive(path: Path) -> None:
  """Raises ValueError unless ``path`` is an intact zip of one top folder."""
  top = path.name[:-len(".zip")] + "/"
  try:
    with zipfile.ZipFile(path) as z:
      bad = z.testzip()
      names = z.namelist()
  except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
    raise ValueError(f"{path} is a corrupt zip archive: {e}") from e
  if bad is not None:
    raise ValueError(f"{path} is a corrupt zip archive: bad CRC in {bad}")
  if not names or any(not n.startswith(top) for n in names):
    raise ValueError(f"{path} does not hold a single top folder {top!r}")


def decode_png(png: bytes) -> np.ndarray:
  """PNG bytes (Omniglot's 1-bit PNGs) -> uint8 [H, W] grey in {0, 255}."""
  from PIL import Image  # Pillow comes with the `data` extra.
  return np.asarray(Image.open(io.BytesIO(png)).convert("L"))


def ink_mask(image: np.ndarray) -> np.ndarray:
  """Decoded Omniglot image [H, W] or [H, W, C] -> bool ink mask [H, W].

  Pillow decodes the 1-bit PNGs as {0, 1}, OpenCV or TensorFlow as {0, 255};
  either way the background is white (the maximum) and ink is 0.
  """
  gray = image[..., 0] if image.ndim == 3 else image
  scale = 1 if gray.max() <= 1 else 255
  return gray < scale / 2


def downsample(ink: np.ndarray) -> np.ndarray:
  """Bool ink mask [105, 105] -> uint8 [28, 28] in {0, 1} (ink = 1).

  Lanczos on a float image (Pillow would force NEAREST on mode '1'), then
  ``> INK_THRESHOLD``.
  """
  from PIL import Image  # Pillow comes with the `data` extra.
  small = Image.fromarray(ink.astype(np.float32)).resize(
      (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
  return (np.asarray(small) > INK_THRESHOLD).astype(np.uint8)


def _tfds_sources(omniglot_dir: Path, verified: Mapping[str, tuple[int, str]],
                  work_dir: Path):
  """Builds TFDS omniglot (array_record) offline; returns (builder, sources)."""
  try:
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import checksums
    from tensorflow_datasets.image_classification import omniglot as tfds_og
  except ImportError as e:
    raise ImportError(
        "Building the Omniglot cache needs tensorflow-datasets and TensorFlow "
        "(pip install 'metalearn[data]'); reading an existing cache does not."
    ) from e
  # The builder's own url_infos take priority over TFDS's registry, so TFDS
  # re-verifies each file against the checksum we just checked is known.
  url_infos = {}
  for url in tfds_og._DL_URLS.values():  # pylint: disable=protected-access
    name = url.rsplit("/", 1)[-1]
    size, sha = verified[name]
    url_infos[url] = checksums.UrlInfo(
        size=tfds.core.utils.Size(size), checksum=sha, filename=name)

  class VerifiedOmniglot(tfds_og.Omniglot, skip_registration=True):
    name = "omniglot"

  VerifiedOmniglot.url_infos = url_infos
  tfds.display_progress_bar(False)
  # TFDS makes stray temp dirs (DatasetInfo.initialize_from_bucket) and prints
  # where it prepared the data: keep both inside work_dir, which we delete.
  previous_tempdir, tempfile.tempdir = tempfile.tempdir, str(work_dir)
  try:
    builder = VerifiedOmniglot(data_dir=work_dir / "data",
                               file_format="array_record")
    with contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare(
          download_dir=work_dir / "downloads",
          download_config=tfds.download.DownloadConfig(
              manual_dir=omniglot_dir, try_download_gcs=False))
  finally:
    tempfile.tempdir = previous_tempdir
  # Decode the stored PNG bytes ourselves: faster than TFDS's RGB decode.
  return builder, builder.as_data_source(
      decoders={"image": tfds.decode.SkipDecoding()})


def _convert(builder, sources, progress: bool) -> dict[str, CachedSplit]:
  """TFDS records (PNG bytes + labels) -> class-major ``CachedSplit``s."""
  alphabet_names = builder.info.features["alphabet"].int2str
  total = sum(len(sources[s]) for s in TFDS_SPLITS)
  out = {}
  with tqdm(total=total, desc="convert", unit="img",
            disable=not progress) as bar:
    for split in TFDS_SPLITS:
      images, ink, labels, alphabets, chars = [], [], [], [], []
      for record in sources[split]:
        mask = ink_mask(decode_png(record["image"]))
        images.append(downsample(mask))
        ink.append(mask.mean())
        labels.append(record["label"])
        alphabets.append(record["alphabet"])
        chars.append(record["alphabet_char_id"])
        bar.update()
      labels = np.asarray(labels, np.int32)
      order = np.argsort(labels, kind="stable")
      classes, first, counts = np.unique(labels, return_index=True,
                                         return_counts=True)
      if np.any(counts != NUM_DRAWINGS):
        raise ValueError(f"split {split!r}: expected {NUM_DRAWINGS} drawings "
                         f"per class, got counts {sorted(set(counts))}")
      shape = (len(classes), NUM_DRAWINGS)
      out[split] = CachedSplit(
          images=np.stack(images)[order].reshape(*shape, IMAGE_SIZE,
                                                 IMAGE_SIZE),
          labels=classes.astype(np.int32),
          alphabets=np.asarray(
              [alphabet_names(int(alphabets[i])) for i in first]),
          characters=np.asarray(chars, np.int32)[first],
          ink_105=np.asarray(ink, np.float32)[order].reshape(shape))
  return out


def _write_cache(data: Mapping[str, CachedSplit], cache_dir: Path,
                 verified: Mapping[str, tuple[int, str]]) -> None:
  """Writes every split to a temp file, then renames them into place."""
  cache_dir.mkdir(parents=True, exist_ok=True)
  tmp = {s: cache_dir / f".{s}.npz.{uuid.uuid4().hex}.tmp" for s in data}
  try:
    for split, arrays in data.items():
      with open(tmp[split], "wb") as f:
        np.savez_compressed(
            f, format_version=CACHE_FORMAT_VERSION, ink_threshold=INK_THRESHOLD,
            source_sha256=verified[ZIP_NAMES[split]][1], **arrays._asdict())
    for split, path in tmp.items():
      os.replace(path, cache_path(split, cache_dir))
  finally:
    for path in tmp.values():
      path.unlink(missing_ok=True)


def build_cache(omniglot_dir: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None, *,
                progress: bool = False,
                tmp_dir: str | os.PathLike | None = None,
                known_sha256: Mapping[str, Mapping[str, str]] = KNOWN_SHA256
               ) -> Path:
  """Verifies the zips, builds TFDS omniglot and (over)writes the cache.

  Needs the ``data`` extra (TensorFlow, tensorflow-datasets, Pillow) and
  turns TFDS's own progress bars off. TFDS's files (~160 MB extracted) live
  in a temp dir under ``tmp_dir`` that is always removed; the cache files
  appear only once all four splits are converted.

  Args:
    omniglot_dir: dir holding the four original zips; see
      ``resolve_omniglot_dir``.
    cache_dir: where to write ``{train,test,small1,small2}.npz``; see
      ``resolve_cache_dir``.
    progress: show tqdm progress bars.
    tmp_dir: parent of the temporary build dir (default: system temp dir).
    known_sha256: {zip name: {sha256: description}} of accepted files.

  Returns:
    The cache dir.
  """
  cache_dir = resolve_cache_dir(cache_dir)
  source = resolve_omniglot_dir(omniglot_dir)
  if source is None:
    raise _missing_zips_error(None, cache_dir)
  verified = verify_zips(source, cache_dir, known_sha256=known_sha256,
                         progress=progress)
  work_dir = Path(tempfile.mkdtemp(prefix="metalearn-omniglot-", dir=tmp_dir))
  try:
    try:
      builder, sources = _tfds_sources(source, verified, work_dir)
      data = _convert(builder, sources, progress)
    except ImportError:
      raise
    except Exception as e:  # TFDS raises many kinds; wrap them all.
      raise RuntimeError(f"Building the Omniglot cache from {source} failed "
                         f"({type(e).__name__}: {e}); no cache was written."
                        ) from e
    _write_cache(data, cache_dir, verified)
  finally:
    shutil.rmtree(work_dir, ignore_errors=True)
  return cache_dir


def ensure_cache(omniglot_dir: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, *,
                 progress: bool = False) -> Path:
  """Returns the cache dir, building the cache first if it is incomplete.

  With a complete cache this only reads each file's format version and never
  imports TensorFlow; otherwise it calls ``build_cache`` (see there).
  """
  cache_dir = resolve_cache_dir(cache_dir)
  if is_cache_complete(cache_dir):
    return cache_dir
  return build_cache(omniglot_dir, cache_dir, progress=progress)


# ---------------------------------------------------------------- named splits

SPLIT_NAMES = ("lake", "vinyals", "mamlpp")
# name -> (train, val, test) class counts, before rotation.
SPLIT_SIZES = {
    "lake": (864, 100, 659),
    "vinyals": (1100, 100, 423),
    "mamlpp": (1150, 50, 423),
}
SPLIT_SEED = 0


class Splits(NamedTuple):
  """Train / val / test classes: images [C, 20, 28, 28] uint8 or labels [C]."""
  train: np.ndarray
  val: np.ndarray
  test: np.ndarray


def _check_split_name(name: str) -> None:
  if name not in SPLIT_NAMES:
    raise ValueError(f"name={name!r} is not a known split; valid names: "
                     f"{', '.join(SPLIT_NAMES)}")


def _seeded_order(labels: np.ndarray, salt: str) -> np.ndarray:
  """Labels in a fixed pseudo-random order (sha256 of salt/seed/label).

  Independent of numpy's RNG, so splits never change between versions.
  """
  keys = [hashlib.sha256(f"{salt}/{SPLIT_SEED}/{int(l)}".encode()).digest()
          for l in labels]
  return np.asarray(labels)[sorted(range(len(keys)), key=keys.__getitem__)]


def split_labels(name: str, background: np.ndarray, evaluation: np.ndarray
                ) -> Splits:
  """TFDS labels of each split's classes, each sorted ascending.

  Args:
    name: "lake" (background vs evaluation alphabets, 100 background
      characters held out for val), "vinyals" (1200 / 423 characters of all
      1623 by a seeded permutation; 100 of the 1200 for val) or "mamlpp"
      (the same permutation; 50 of the 1200 for val).
    background: [964] labels of the TFDS ``train`` split.
    evaluation: [659] labels of the TFDS ``test`` split.

  Returns:
    ``Splits`` of int32 label arrays.
  """
  _check_split_name(name)
  if name == "lake":
    order = _seeded_order(background, "lake")
    n_val = SPLIT_SIZES[name][1]
    train, val, test = order[n_val:], order[:n_val], np.asarray(evaluation)
  else:
    order = _seeded_order(np.concatenate([background, evaluation]), "vinyals")
    n_train, n_val, _ = SPLIT_SIZES[name]
    n_pool = n_train + n_val
    train, val, test = order[n_val:n_pool], order[:n_val], order[n_pool:]
  return Splits(*(np.sort(x).astype(np.int32) for x in (train, val, test)))


def load_splits(name: str, cache_dir: str | os.PathLike | None = None, *,
                rotate_train: bool = False) -> Splits:
  """Loads a named split from the cache (no TensorFlow needed).

  Args:
    name: one of ``SPLIT_NAMES``; see ``split_labels`` and ``SPLIT_SIZES``.
    cache_dir: cache dir; see ``resolve_cache_dir``.
    rotate_train: add the 90/180/270 degree rotations of every training
      character as new classes (train becomes [4 C, 20, 28, 28]; class
      ``r * C + c`` is class ``c`` turned ``r`` times, as in
      ``episodes.rotate_classes``). Val and test are never rotated.

  Returns:
    ``Splits`` of uint8 image arrays [C, 20, 28, 28].
  """
  _check_split_name(name)
  background = load_cached("train", cache_dir)
  evaluation = load_cached("test", cache_dir)
  images = np.concatenate([background.images, evaluation.images])
  labels = np.concatenate([background.labels, evaluation.labels])
  row = {int(l): i for i, l in enumerate(labels)}
  split = split_labels(name, background.labels, evaluation.labels)
  out = Splits(*(images[[row[int(l)] for l in part]] for part in split))
  if rotate_train:
    out = out._replace(train=episodes.rotate_classes(out.train))
  return out
