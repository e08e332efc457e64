"""The report of an algorithm comparison.

``tables`` (pure: ratios, recommendation, tables), ``document`` (what the
report says, as ``report.md`` and a self-contained ``report.html``),
``writeup`` (ours beside the PyTorch write-up's published figures),
``curves`` and ``spread`` (the pictures' data and drawings), ``plots`` (the
PNG files and their captions; matplotlib imported lazily, no global backend
switch) and ``records`` (the per-algorithm record).
"""

from metalearn.report.curves import AdaptationData
from metalearn.report.curves import TrainingData
from metalearn.report.curves import adaptation_data
from metalearn.report.curves import draw_adaptation
from metalearn.report.curves import draw_training
from metalearn.report.curves import plot_adaptation_loss
from metalearn.report.curves import plot_training_loss
from metalearn.report.curves import training_data
from metalearn.report.document import render_html
from metalearn.report.document import render_markdown
from metalearn.report.document import sections
from metalearn.report.figures import Series
from metalearn.report.plots import PLOTS
from metalearn.report.plots import InnerLrData
from metalearn.report.plots import caption
from metalearn.report.plots import draw_inner_lrs
from metalearn.report.plots import inner_lr_data
from metalearn.report.plots import plot_inner_lrs
from metalearn.report.plots import write_plots
from metalearn.report.records import AlgorithmResult
from metalearn.report.records import adaptation_curves
from metalearn.report.records import as_result
from metalearn.report.spread import Point
from metalearn.report.spread import TaskAccuracy
from metalearn.report.spread import TradeoffData
from metalearn.report.spread import draw_task_accuracy
from metalearn.report.spread import draw_tradeoff
from metalearn.report.spread import plot_task_accuracy
from metalearn.report.spread import plot_tradeoff
from metalearn.report.spread import task_accuracy_data
from metalearn.report.spread import tradeoff_data
from metalearn.report.tables import Ratio
from metalearn.report.tables import console_report
from metalearn.report.tables import console_table
from metalearn.report.tables import explanations
from metalearn.report.tables import paired_ci95
from metalearn.report.tables import ratio_table
from metalearn.report.tables import ratios
from metalearn.report.tables import recommend
from metalearn.report.tables import step_loss_table
from metalearn.report.tables import table_rows
from metalearn.report.writeup import WRITEUP_RESULTS
from metalearn.report.writeup import Published
from metalearn.report.writeup import writeup_rows
from metalearn.report.writeup import writeup_table
