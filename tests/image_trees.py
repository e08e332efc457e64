"""Small trees of class folders with PIL images, for the folder tests."""

from pathlib import Path

import numpy as np
from PIL import Image


def class_pattern(c: int, size: int = 20) -> np.ndarray:
  """A class's bright block in a dark square (uint8 [size, size])."""
  image = np.full((size, size), 20, np.uint8)
  row, col = divmod(c * 7 % 25, 5)
  step = size // 5
  image[row * step:(row + 1) * step, col * step:(col + 1) * step] = 230
  return image


def write_image(path: Path, pixels: np.ndarray, *, colour: bool = False,
                fmt: str = "PNG") -> None:
  """Writes uint8 [H, W] pixels as a grayscale or RGB file."""
  path.parent.mkdir(parents=True, exist_ok=True)
  image = Image.fromarray(pixels)
  if colour:
    image = image.convert("RGB")
  image.save(path, fmt)


def make_tree(root: Path, counts, *, nested: bool = True, seed: int = 0,
              prefix: str = "") -> list[str]:
  """One folder per class, ``counts[c]`` images each; returns class names.

  Nested: ``root/alphabet<a>/character<c>/``, 4 classes per alphabet.
  Images vary in size (20x20 or 24x30), mode (grayscale, RGB) and format
  (PNG, one JPEG per class), with noise around the class pattern.
  """
  rng = np.random.default_rng(seed)
  names = []
  for c, count in enumerate(counts):
    name = (f"{prefix}alphabet{c // 4}/character{c:02d}" if nested
            else f"{prefix}class{c:02d}")
    names.append(name)
    for i in range(count):
      pixels = class_pattern(c + seed * 100)
      if i % 3 == 1:
        pixels = np.asarray(Image.fromarray(pixels).resize((30, 24)))
      noisy = np.clip(pixels + rng.normal(0, 10, pixels.shape), 0, 255)
      fmt, suffix = ("JPEG", "jpg") if i == 2 else ("PNG", "png")
      write_image(root / name / f"img{i:03d}.{suffix}",
                  noisy.astype(np.uint8), colour=i % 2 == 1, fmt=fmt)
  return names
