"""metrics.jsonl is cut back on resume; TensorBoard never pulls in TF."""

import json
import subprocess
import sys
import textwrap

from metalearn import metrics_log


def _steps(path):
  return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_resume_drops_rows_after_resume_step(tmp_path):
  w = metrics_log.MetricsWriter(tmp_path)
  for step in (10, 20, 20, 30, 40):
    w.write(step, {"loss": 1.0})
  w.close()
  w = metrics_log.MetricsWriter(tmp_path, resume_step=20)
  assert _steps(w.path) == [10, 20, 20]
  w.write(30, {"loss": 0.5})
  w.close()
  assert _steps(w.path) == [10, 20, 20, 30]
  assert not list(tmp_path.glob(".metrics.jsonl.*"))  # No temporary left.


def test_partial_last_line_is_repaired(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 10, "loss": 1.0}\n{"step": 20, "lo')
  w = metrics_log.MetricsWriter(tmp_path, resume_step=20)
  assert path.read_text() == '{"step": 10, "loss": 1.0}\n'
  w.write(20, {"loss": 0.5})
  w.close()
  assert _steps(path) == [10, 20]


def test_no_resume_step_keeps_complete_rows(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 10}\n{"step": 20}\n{"ste')
  metrics_log.MetricsWriter(tmp_path).close()
  assert _steps(path) == [10, 20]


def test_resume_writes_session_start_event(tmp_path):
  w = metrics_log.MetricsWriter(tmp_path, resume_step=7)
  w.write(8, {"loss": 1.0, "compiled": True})
  w.close()
  from tensorboard.backend.event_processing import event_file_loader  # pylint: disable=g-import-not-at-top
  (events,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
  got = list(event_file_loader.RawEventFileLoader(str(events)).Load())
  assert len(got) == 3  # file_version, SessionLog.START, one summary.


def test_writing_a_row_never_imports_tensorflow(tmp_path):
  code = textwrap.dedent(f"""
      import sys
      from metalearn import metrics_log
      w = metrics_log.MetricsWriter({str(tmp_path)!r}, resume_step=0)
      w.write(1, {{"loss": 1.0}})
      w.close()
      assert w._tb is not None, "tensorboard should be installed here"
      print("tensorflow" in sys.modules)
  """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True, timeout=300)
  assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
