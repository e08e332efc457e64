"""The README's quickstart runs as written, and its commands stay true."""

import pathlib
import re

README = pathlib.Path(__file__).parents[1] / "README.md"


def test_quickstart_runs_as_written(omniglot_cache_dir, capsys):
  del omniglot_cache_dir  # builds the cache the snippet reads.
  text = README.read_text()
  code = re.search(r"## Quickstart\n\n```python\n(.*?)```", text, re.S).group(1)
  namespace = {}
  exec(compile(code, str(README), "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["metrics"].accuracy.shape == (4, 1)
  assert float(namespace["loss"]) > 0
  assert "(4, 1)" in capsys.readouterr().out


def test_readme_opens_with_the_two_commands():
  lines = README.read_text().splitlines()
  block = lines[lines.index("```bash") + 1:lines.index("```bash") + 3]
  assert block[0].endswith("python experiments/compare.py")
  assert block[1].endswith("python -m pytest -q")
  ci = (README.parent / ".ci" / "run").read_text()
  assert "python -m pytest -q" in ci
