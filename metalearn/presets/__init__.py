"""Every experiment as a config file: ``get_config(arg)``, found by name.

``--config=maml:5w1s`` names ``maml.py`` here with the argument ``5w1s``;
``experiments/configs/`` is this folder, so ``--config=PATH.py[:arg]`` works
from a checkout too. Each file's docstring holds the command that runs it
and where its measured result is recorded (docs/benchmarks.md).
"""

from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def names() -> tuple[str, ...]:
  """The preset names (file stems), sorted."""
  return tuple(sorted(p.stem for p in FOLDER.glob("*.py")
                      if not p.stem.startswith("_")))


def resolve(spec: str) -> str:
  """``NAME[:arg]`` of a preset -> ``/path/NAME.py[:arg]``; a path (with a
  ``/`` or ending in ``.py``) is returned unchanged.

  Raises:
    ValueError: a bare name that is no preset, listing the presets.
  """
  name, sep, arg = spec.partition(":")
  if "/" in name or name.endswith(".py"):
    return spec
  if name not in names():
    raise ValueError(f"--config={spec!r}: no preset config {name!r}; give a "
                     f"file path or one of {', '.join(names())}.")
  return str(FOLDER / f"{name}.py") + sep + arg
