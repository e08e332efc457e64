"""Builds the Omniglot cache with tensorflow-datasets.

The only module that uses TensorFlow / tensorflow-datasets, and only inside
functions: importing it costs nothing. ``rebuild_cache`` tries the sources of
``sources`` in order (prepared TFDS dataset, zips, TFDS download), converts
TFDS's records (PNG bytes + labels) into ``store.CachedSplit``s and writes
the cache with its manifest. It never reads the cache: checking and reusing
one is :mod:`metalearn.data.omniglot.access`'s job.
"""

import contextlib
import io
import os
from pathlib import Path
import shutil
import tempfile
from typing import Callable, Mapping
import warnings

import numpy as np
from tqdm import tqdm

from metalearn.data.omniglot import sources
from metalearn.data.omniglot import store

Records = Mapping[str, object]  # TFDS split -> sequence of record dicts.


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
  size = store.IMAGE_SIZE
  small = Image.fromarray(ink.astype(np.float32)).resize(
      (size, size), Image.Resampling.LANCZOS)
  return (np.asarray(small) > store.INK_THRESHOLD).astype(np.uint8)


def import_tfds():
  """tensorflow_datasets, or an ImportError that says how to install it."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "Building the Omniglot cache needs tensorflow-datasets and TensorFlow "
        "(pip install 'metalearn[data]'); reading an existing cache does not."
    ) from e
  tfds.display_progress_bar(False)
  return tfds


@contextlib.contextmanager
def _tfds_quiet(work_dir: Path):
  """TFDS makes stray temp dirs and prints where it prepared the data: keep
  both inside ``work_dir`` (deleted by the caller)."""
  previous, tempfile.tempdir = tempfile.tempdir, str(work_dir)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tempfile.tempdir = previous


def prepare_tfds(tfds, zip_dir: Path, verified: Mapping[str, tuple[int, str]],
                 *, data_dir: Path, work_dir: Path, file_format: str):
  """Runs TFDS's ``omniglot`` builder offline on verified zips; returns it.

  A subclass (same name and code) whose ``url_infos`` hold the size and
  sha256 just verified: a builder's own ``url_infos`` take priority over
  TFDS's registry, so TFDS re-verifies every file without switching
  verification off.
  """
  from tensorflow_datasets.core.download import checksums  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.image_classification import omniglot as tfds_og  # pylint: disable=g-import-not-at-top
  url_infos = {}
  for url in tfds_og._DL_URLS.values():  # pylint: disable=protected-access
    name = url.rsplit("/", 1)[-1]
    size, sha = verified[name]
    url_infos[url] = checksums.UrlInfo(
        size=tfds.core.utils.Size(size), checksum=sha, filename=name)

  class VerifiedOmniglot(tfds_og.Omniglot, skip_registration=True):
    name = sources.TFDS_NAME

  VerifiedOmniglot.url_infos = url_infos
  with _tfds_quiet(work_dir):
    builder = VerifiedOmniglot(data_dir=data_dir, file_format=file_format)
    builder.download_and_prepare(
        download_dir=work_dir / "downloads",
        download_config=tfds.download.DownloadConfig(
            manual_dir=zip_dir, try_download_gcs=False))
  return builder


def read_records(tfds, builder) -> Records:
  """{TFDS split: records} with the PNG bytes left undecoded.

  array_record datasets are read with ``as_data_source``, tfrecord ones
  (TFDS's default) with ``as_dataset``.
  """
  decoders = {"image": tfds.decode.SkipDecoding()}
  file_format = builder.info.file_format  # A FileFormat enum, or None.
  if getattr(file_format, "value", file_format) == "array_record":
    return builder.as_data_source(decoders=decoders)
  return {s: tfds.as_numpy(builder.as_dataset(split=s, decoders=decoders,
                                              shuffle_files=False))
          for s in sources.TFDS_SPLITS}


def _convert_split(split: str, records, int2str: Callable[[int], str],
                   bar) -> store.CachedSplit:
  """One split's records -> class-major ``CachedSplit``."""
  images, ink, labels, alphabets, chars = [], [], [], [], []
  for record in records:
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
  if len(classes) != sources.NUM_CLASSES[split]:
    raise ValueError(f"split {split!r}: expected {sources.NUM_CLASSES[split]} "
                     f"classes, got {len(classes)}")
  if np.any(counts != store.NUM_DRAWINGS):
    raise ValueError(f"split {split!r}: expected {store.NUM_DRAWINGS} "
                     f"drawings per class, got counts {sorted(set(counts))}")
  shape = (len(classes), store.NUM_DRAWINGS)
  size = store.IMAGE_SIZE
  return store.CachedSplit(
      images=np.stack(images)[order].reshape(*shape, size, size),
      labels=classes.astype(np.int32),
      alphabets=np.asarray([int2str(int(alphabets[i])) for i in first]),
      characters=np.asarray(chars, np.int32)[first],
      ink_105=np.asarray(ink, np.float32)[order].reshape(shape))


def convert(tfds, builder, progress: bool
           ) -> dict[str, store.CachedSplit]:
  """A prepared TFDS omniglot dataset -> {TFDS split: CachedSplit}."""
  records = read_records(tfds, builder)
  total = sum(builder.info.splits[s].num_examples for s in sources.TFDS_SPLITS)
  int2str = builder.info.features["alphabet"].int2str
  with tqdm(total=total, desc="convert", unit="img",
            disable=not progress) as bar:
    return {s: _convert_split(s, records[s], int2str, bar)
            for s in sources.TFDS_SPLITS}


def _tfds_build(zip_dir: Path, verified, work_dir: Path, *, progress: bool,
                data_dir: Path | None = None):
  """Verified zips -> (data, source, sha256s); TFDS files stay in work_dir
  unless ``data_dir`` is given (then the prepared dataset is kept there)."""
  tfds = import_tfds()
  builder = prepare_tfds(
      tfds, zip_dir, verified, data_dir=data_dir or work_dir / "data",
      work_dir=work_dir,
      file_format="tfrecord" if data_dir else "array_record")
  shas = {s: verified[name][1] for s, name in sources.ZIP_NAMES.items()}
  return convert(tfds, builder, progress), f"zips in {zip_dir}", shas


def from_zips(zip_dir: Path, work_dir: Path, *, progress: bool,
              data_dir: Path | None = None):
  """Source 3: the four zips, verified -> (data, source, sha256s)."""
  verified = sources.verify_zips(zip_dir, work_dir, progress=progress)
  return _tfds_build(zip_dir, verified, work_dir, progress=progress,
                     data_dir=data_dir)


def from_tfds_dir(tfds_data_dir: Path, work_dir: Path, *, progress: bool):
  """Source 2: a prepared TFDS omniglot dataset -> (data, source, {})."""
  dataset_dir = sources.find_tfds_dataset(tfds_data_dir)
  if dataset_dir is None:
    raise sources.SourceUnavailable(
        f"no prepared dataset (no {sources.TFDS_NAME}/<version>/ with "
        "dataset_info.json)")
  tfds = import_tfds()
  with _tfds_quiet(work_dir):
    builder = tfds.builder_from_directory(dataset_dir)
    data = convert(tfds, builder, progress)
  return data, f"TFDS dataset {dataset_dir}", {}


def download_zips(url: str, work_dir: Path) -> Path:
  """Source 4: TFDS downloads the four zips; returns a dir of links to them.

  The default URL's files are checked by TFDS against its registered
  checksums; every file is then checked against ``KNOWN_SHA256``.
  """
  reason = sources.probe_url(url)
  if reason is not None:
    raise sources.SourceUnavailable(reason)
  tfds = import_tfds()
  manager = tfds.download.DownloadManager(download_dir=work_dir / "downloads")
  with _tfds_quiet(work_dir):
    paths = manager.download({n: url + n for n in sources.ZIP_NAMES.values()})
  zip_dir = work_dir / "zips"
  zip_dir.mkdir()
  for name, path in paths.items():
    (zip_dir / name).symlink_to(Path(path).resolve())
  return zip_dir


@contextlib.contextmanager
def _work_dir(tmp_dir):
  work_dir = Path(tempfile.mkdtemp(prefix="metalearn-omniglot-", dir=tmp_dir))
  try:
    yield work_dir
  finally:
    shutil.rmtree(work_dir, ignore_errors=True)


def build_cache(omniglot_dir: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None, *,
                progress: bool = False,
                tmp_dir: str | os.PathLike | None = None,
                known_sha256: Mapping[str, Mapping[str, str]] = (
                    sources.KNOWN_SHA256)) -> Path:
  """Verifies the zips, builds TFDS omniglot and (over)writes the cache.

  Source 3 only (no fallback): needs the ``data`` extra (TensorFlow,
  tensorflow-datasets, Pillow). TFDS's files (~160 MB extracted) live in a
  temp dir under ``tmp_dir`` that is always removed; the cache files appear
  only once all four splits are converted.

  Args:
    omniglot_dir: dir holding the four original zips; see
      ``sources.resolve_omniglot_dir``.
    cache_dir: where to write the cache; see ``store.resolve_cache_dir``.
    progress: show tqdm progress bars.
    tmp_dir: parent of the temporary build dir (default: system temp dir).
    known_sha256: {zip name: {sha256: description}} of accepted files.

  Returns:
    The cache dir.
  """
  cache_dir = store.resolve_cache_dir(cache_dir)
  zip_dir = sources.resolve_omniglot_dir(omniglot_dir)
  if zip_dir is None:
    raise sources.missing_zips_error(None, cache_dir)
  verified = sources.verify_zips(zip_dir, cache_dir,
                                 known_sha256=known_sha256, progress=progress)
  with _work_dir(tmp_dir) as work_dir:
    try:
      data, source, shas = _tfds_build(zip_dir, verified, work_dir,
                                       progress=progress)
    except ImportError:
      raise
    except Exception as e:  # TFDS raises many kinds; wrap them all.
      raise RuntimeError(f"Building the Omniglot cache from {zip_dir} failed "
                         f"({type(e).__name__}: {e}); no cache was written."
                        ) from e
    store.write_cache(data, cache_dir, source=source, source_sha256=shas)
  return cache_dir


def _attempts(omniglot_dir, tfds_data_dir: Path, url: str, progress: bool):
  """(way, function of work_dir -> (data, source, shas)) in source order."""
  def zips(work_dir):
    zip_dir = sources.resolve_omniglot_dir(omniglot_dir)
    if zip_dir is None or not all(
        (zip_dir / n).is_file() for n in sources.ZIP_NAMES.values()):
      raise sources.SourceUnavailable(
          f"not found {'in ' + str(zip_dir) if zip_dir else '(no dir given)'}")
    return from_zips(zip_dir, work_dir, progress=progress)

  def download(work_dir):
    zip_dir = download_zips(url, work_dir)
    keep = sources.find_tfds_dataset(tfds_data_dir) is None
    data, _, shas = from_zips(zip_dir, work_dir, progress=progress,
                              data_dir=tfds_data_dir if keep else None)
    return data, f"TFDS download from {url}", shas

  return (("tfds", lambda w: from_tfds_dir(tfds_data_dir, w,
                                           progress=progress)),
          ("zips", zips), ("download", download))


def rebuild_cache(omniglot_dir: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None, *,
                  progress: bool = False,
                  tfds_data_dir: str | os.PathLike | None = None,
                  download_url: str | None = None,
                  tmp_dir: str | os.PathLike | None = None,
                  cache_problem: str = "not checked") -> Path:
  """(Re)writes the cache from the first source that works (sources 2-4).

  A source that is absent is skipped quietly; one that is present but fails
  (bad checksum, broken dataset) is skipped with a warning. A download also
  keeps TFDS's prepared dataset (tfrecord) in the TFDS data dir, as
  ``tfds.load`` would, unless one is there already.

  Args:
    omniglot_dir, cache_dir, progress, tfds_data_dir, download_url, tmp_dir:
      as in ``access.ensure_cache``.
    cache_problem: why the existing cache was not used (for the error).

  Raises:
    metalearn.data.NoSourceError: every source failed; lists the four ways.

  Returns:
    The cache dir.
  """
  cache_dir = store.resolve_cache_dir(cache_dir)
  tfds_data_dir = sources.resolve_tfds_data_dir(tfds_data_dir)
  url = sources.resolve_download_url(download_url)
  reasons = {"cache": cache_problem}
  for way, attempt in _attempts(omniglot_dir, tfds_data_dir, url, progress):
    with _work_dir(tmp_dir) as work_dir:
      try:
        data, source, shas = attempt(work_dir)
      except sources.SourceUnavailable as e:
        reasons[way] = str(e)
        continue
      except Exception as e:  # pylint: disable=broad-except
        reasons[way] = f"failed ({type(e).__name__}: {e})"
        warnings.warn(f"Omniglot source {way!r} failed, trying the next: "
                      f"{reasons[way]}", stacklevel=2)
        continue
    store.write_cache(data, cache_dir, source=source, source_sha256=shas)
    return cache_dir
  raise sources.no_source_error(cache_dir, reasons,
                                tfds_data_dir=tfds_data_dir, url=url)
