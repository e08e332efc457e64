"""Predictions from folders of images: ``predictions.csv`` and a figure.

``predict_folders(workdir, support_dir, query_dir, output_dir)`` reads the
support set from class folders (as the ``folders`` dataset does: every
folder holding images is a class, named by its path below ``support_dir``)
and the queries from every image below ``query_dir``, resizes them to the
run's input shape (:func:`metalearn.data.folders.read_image`), calls
:func:`metalearn.predict.adapt_and_predict` and writes:

* ``predictions.csv``: ``file`` (below ``query_dir``), ``predicted``,
  ``probability`` (of the predicted class), then ``p:<class>`` per class;
* ``predictions.png``: a row per support class (its support images), then
  the queries, each titled with its predicted class and probability.
"""

import csv
import os
import textwrap
from pathlib import Path
from typing import Optional

import numpy as np

from metalearn import predict
from metalearn.data import folders

SUPPORT_ROWS_MAX = 8
QUERY_COLUMNS = 8
# Characters per title line that fit one figure column (1.3 in, 7 pt).
TITLE_CHARS = 18


def _read(paths, input_shape: tuple, invert: bool) -> np.ndarray:
  height, width, channels = input_shape
  if height != width:
    raise ValueError(f"the run's inputs are {height}x{width}; reading image "
                     "files needs square inputs.")
  x = np.stack([folders.read_image(p, height, channels) for p in paths])
  return 255 - x if invert else x


def read_support(support_dir, input_shape: tuple, *, invert: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 images [S, H, W, C], class names [S]) from class folders."""
  root = Path(support_dir).expanduser()
  found = folders.class_folders(root) if root.is_dir() else {}
  if len(found) < 2:
    raise ValueError(f"support_dir={str(support_dir)!r} must hold one folder "
                     f"of images per class (at least 2 classes); found "
                     f"{len(found)}.")
  names = [n for n, paths in found.items() for _ in paths]
  paths = [p for ps in found.values() for p in ps]
  return _read(paths, input_shape, invert), np.asarray(names)


def read_queries(query_dir, input_shape: tuple, *, invert: bool = False
                ) -> tuple[np.ndarray, list[str]]:
  """(uint8 images [Q, H, W, C], their paths below ``query_dir``)."""
  root = Path(query_dir).expanduser()
  found = folders.class_folders(root) if root.is_dir() else {}
  paths = sorted(p for ps in found.values() for p in ps)
  if not paths:
    raise ValueError(f"query_dir={str(query_dir)!r} holds no image files.")
  return (_read(paths, input_shape, invert),
          [p.relative_to(root).as_posix() for p in paths])


def write_csv(path: Path, files: list[str],
              prediction: predict.Prediction) -> None:
  """One row per query: file, predicted, probability, p:<class>..."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["file", "predicted", "probability",
                     *(f"p:{n}" for n in prediction.class_names)])
    for name, label, p in zip(files, prediction.labels,
                              prediction.probabilities):
      writer.writerow([name, label, f"{p.max():.4f}",
                       *(f"{v:.4f}" for v in p)])


def _wrap(name) -> str:
  """A class name in lines that fit a figure column (long names, e.g.
  ``Japanese_(hiragana)__char06``, would run into their neighbours)."""
  return "\n".join(textwrap.wrap(str(name), TITLE_CHARS,
                                  break_on_hyphens=False)) or str(name)


def plot(path: Path, support_x: np.ndarray, support_names: np.ndarray,
         query_x: np.ndarray, prediction: predict.Prediction) -> None:
  """Support images per class (one row each), then each query titled with
  its predicted class and probability."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  classes = prediction.class_names
  shots = max(int(np.sum(support_names == str(c))) for c in classes)
  cols = max(min(shots, SUPPORT_ROWS_MAX) + 1, QUERY_COLUMNS)
  query_rows = -(-len(query_x) // cols)
  fig, axes = plt.subplots(len(classes) + query_rows, cols,
                           figsize=(1.3 * cols, 1.4 * (len(classes)
                                                       + query_rows)),
                           squeeze=False)
  for ax in axes.ravel():
    ax.axis("off")

  def show(ax, image, title, **kw):
    image = image[..., 0] if image.shape[-1] == 1 else image
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.set_title(title, fontsize=7, **kw)

  for row, name in enumerate(classes):
    axes[row, 0].text(0.5, 0.5, _wrap(name), ha="center", va="center",
                      fontsize=8)
    images = support_x[support_names == str(name)][:cols - 1]
    for i, image in enumerate(images):
      show(axes[row, i + 1], image, "support" if i == 0 else "")
  for i, (image, label, p) in enumerate(zip(query_x, prediction.labels,
                                            prediction.probabilities)):
    show(axes[len(classes) + i // cols, i % cols], image,
         f"{_wrap(label)}\n{p.max():.2f}")
  fig.suptitle(f"{len(classes)} classes; support, then queries with the "
               "predicted class and its probability", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def predict_folders(workdir, support_dir, query_dir,
                    output_dir: Optional[str | os.PathLike] = None, *,
                    inner_steps: Optional[int] = None, which: str = "best",
                    batch_norm: str = "support", invert: bool = False
                   ) -> tuple[predict.Prediction, Path]:
  """Adapts the run in ``workdir`` to ``support_dir`` and classifies every
  image in ``query_dir``; writes ``predictions.csv`` and ``predictions.png``
  to ``output_dir`` (default ``workdir/predictions``).

  Args:
    workdir, which, inner_steps, batch_norm: as in
      :func:`metalearn.predict.adapt_and_predict`.
    support_dir: one folder of images per class (any depth).
    query_dir: images to classify (any depth).
    output_dir: where the two files go (created).
    invert: use ``255 - pixel`` (e.g. black-on-white drawings for a run
      trained on Omniglot's cache, where ink = 1).

  Returns:
    ``(prediction, output dir)``.
  """
  model = predict.from_workdir(workdir, which)
  support_x, names = read_support(support_dir, model.input_shape,
                                  invert=invert)
  query_x, files = read_queries(query_dir, model.input_shape, invert=invert)
  prediction = predict.adapt_and_predict(
      model, support_x, names, query_x, inner_steps=inner_steps,
      batch_norm=batch_norm)
  out = Path(output_dir or Path(workdir) / "predictions")
  out.mkdir(parents=True, exist_ok=True)
  write_csv(out / "predictions.csv", files, prediction)
  plot(out / "predictions.png", support_x, names, query_x, prediction)
  return prediction, out
