"""metalearn: MAML, FOMAML, MAML++, ANIL, Meta-SGD and Reptile as one
functional JAX code path."""

__version__ = "0.3.0"  # The one place: setup.cfg reads it.

from metalearn import algorithms
from metalearn import configs
from metalearn import data
from metalearn import models
from metalearn import objectives
from metalearn import reptile
from metalearn import rules
from metalearn.algorithms import ALGORITHMS
from metalearn.algorithms import Algorithm
from metalearn.api import train_maml
from metalearn.core import BodyHead
from metalearn.core import accuracy
from metalearn.core import adapt
from metalearn.core import cross_entropy
from metalearn.core import meta_loss
from metalearn.core import validate_inner_lrs
from metalearn.evaluate import EvalResult
from metalearn.inner_lrs import extend_inner_lrs
from metalearn.inner_lrs import fixed_inner_lrs
from metalearn.objectives import CLASSIFICATION
from metalearn.objectives import Objective
from metalearn.objectives import REGRESSION
from metalearn.schedules import last_step_weights
from metalearn.schedules import msl_weights
from metalearn.step import MetaState
from metalearn.step import StepOutput
from metalearn.step import init_meta_state
from metalearn.step import make_meta_step
from metalearn.train_result import MetaLearner
from metalearn.train_result import TrainResult
from metalearn.train_result import TrainStats
from metalearn.train_result import TrainedModel
from metalearn.types import EpisodeMask
from metalearn.types import MetaParams
from metalearn.types import StepMetrics
from metalearn.types import Task
