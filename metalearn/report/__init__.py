"""The report of an algorithm comparison.

``tables`` (pure: ratios, recommendation, tables, markdown), ``writeup``
(ours beside the PyTorch write-up's published figures), ``plots`` (PNG
files; matplotlib imported lazily, no global backend switch) and
``records`` (the per-algorithm record).
"""

from metalearn.report.plots import plot_adaptation_loss
from metalearn.report.plots import plot_inner_lrs
from metalearn.report.plots import plot_training_loss
from metalearn.report.plots import write_plots
from metalearn.report.records import AlgorithmResult
from metalearn.report.records import as_result
from metalearn.report.tables import Ratio
from metalearn.report.tables import console_report
from metalearn.report.tables import console_table
from metalearn.report.tables import explanations
from metalearn.report.tables import paired_ci95
from metalearn.report.tables import ratio_table
from metalearn.report.tables import ratios
from metalearn.report.tables import recommend
from metalearn.report.tables import render_markdown
from metalearn.report.tables import step_loss_table
from metalearn.report.tables import table_rows
from metalearn.report.writeup import WRITEUP_RESULTS
from metalearn.report.writeup import Published
from metalearn.report.writeup import writeup_rows
from metalearn.report.writeup import writeup_table
