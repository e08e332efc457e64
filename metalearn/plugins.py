"""``config.plugins``: the user's files that register datasets and models.

Each entry is a module name (``my_package.my_dataset``) or the path of a
``.py`` file; importing it runs its ``metalearn.data.register(...)`` or
``metalearn.models.register(...)`` calls. A file is imported once per
process (under a name derived from its resolved path).
"""

import hashlib
import importlib
import importlib.util
from pathlib import Path
import sys
from types import ModuleType
from typing import Sequence


def _from_file(path: Path) -> ModuleType:
  resolved = path.expanduser().resolve()
  name = ("metalearn_plugin_" + resolved.stem + "_"
          + hashlib.sha1(str(resolved).encode()).hexdigest()[:8])
  if name in sys.modules:
    return sys.modules[name]
  if not resolved.is_file():
    raise ValueError(f"config.plugins: {str(path)!r} is not a file.")
  spec = importlib.util.spec_from_file_location(name, resolved)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[name]
    raise
  return module


def load(entries: Sequence[str]) -> list[ModuleType]:
  """Imports every entry (module name or ``.py`` path); returns them.

  Raises:
    ValueError: naming an entry that is neither an importable module nor a
      file.
  """
  if isinstance(entries, str):
    entries = tuple(e for e in entries.split(",") if e)
  modules = []
  for entry in entries:
    if entry.endswith(".py") or "/" in entry:
      modules.append(_from_file(Path(entry)))
      continue
    try:
      modules.append(importlib.import_module(entry))
    except ModuleNotFoundError as e:
      raise ValueError(f"config.plugins: cannot import {entry!r} ({e}); give "
                       "a module on sys.path or the path of a .py file."
                       ) from None
  return modules
