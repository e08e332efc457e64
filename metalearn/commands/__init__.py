"""The binaries' code, installed as console commands (``metalearn-train``,
``metalearn-compare``, ``metalearn-predict``) and run by
``experiments/*.py`` from a checkout."""

import sys
from typing import Sequence

from metalearn import host_memory
from metalearn import presets


def resolve_config_args(argv: Sequence[str]) -> list[str]:
  """``--config=NAME[:arg]`` (a preset's name) -> the preset's file path.

  Paths pass unchanged; both ``--config=X`` and ``--config X`` are read.
  Raises ValueError for a bare name that is no preset.
  """
  out, argv = [], list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      arg = "--config=" + presets.resolve(arg.split("=", 1)[1])
    elif i > 0 and argv[i - 1] == "--config":
      arg = presets.resolve(arg)
    out.append(arg)
  return out


def prepare_argv() -> None:
  """Restarts the process with huge pages for XLA's CPU scratch
  (:func:`metalearn.host_memory.reexec_with_huge_pages`), then rewrites
  ``sys.argv`` in place (before absl parses it); a bad preset name prints
  one line and exits 2."""
  host_memory.reexec_with_huge_pages()
  try:
    sys.argv[:] = resolve_config_args(sys.argv)
  except ValueError as e:
    print(f"{sys.argv[0]}: {e}", file=sys.stderr)
    sys.exit(2)
