"""The one algorithm table: a name -> what it sets on the one code path.

Every experiment (config, comparison, benchmark, report, ``train_maml``)
reads the algorithms from here. An algorithm is data, not code:

* ``first_order``: ``stop_gradient`` on every inner gradient (FOMAML).
* ``plus_plus``: MAML++ (Antoniou et al. 2019): the multi-step loss annealed
  over ``msl_epochs``, learned per-layer per-step inner rates, per-step
  batch-norm affines, and, when second order, derivative-order annealing
  (first order for the first ``first_order_epochs``).
* ``head_only``: ANIL (Raghu et al. 2020): only the classifier head adapts
  in the inner loop; the body gets no inner gradient.
"""

from typing import NamedTuple


class Algorithm(NamedTuple):
  """What one algorithm name means.

  Attributes:
    name: the key used in configs, flags and results (``maml``).
    label: the name a reader knows (``first-order MAML++``).
    first_order: drop the second-order terms of the meta-gradient.
    plus_plus: MAML++'s multi-step loss, learned per-layer per-step inner
      rates and per-step batch norm.
    head_only: only the classifier head adapts in the inner loop (ANIL).
    summary: one line for reports.
  """
  name: str
  label: str
  first_order: bool
  plus_plus: bool
  head_only: bool
  summary: str

  @property
  def learn_inner_lrs(self) -> bool:
    return self.plus_plus

  @property
  def multi_step_loss(self) -> bool:
    return self.plus_plus

  @property
  def per_step_bn(self) -> bool:
    return self.plus_plus and not self.head_only

  @property
  def anneals_order(self) -> bool:
    """Derivative-order annealing: only a second-order MAML++ has it."""
    return self.plus_plus and not self.first_order


ALGORITHMS = {a.name: a for a in (
    Algorithm("maml", "MAML", False, False, False,
              "second order: the meta-gradient flows back through every "
              "inner step (Finn et al. 2017)"),
    Algorithm("fomaml", "FOMAML", True, False, False,
              "first order: inner gradients are constants, so the "
              "meta-gradient is the query gradient at the adapted weights"),
    Algorithm("mamlpp", "MAML++", False, True, False,
              "MAML plus the multi-step loss, learned per-layer per-step "
              "inner rates, per-step batch norm and derivative-order "
              "annealing (Antoniou et al. 2019)"),
    Algorithm("mamlpp_first_order", "first-order MAML++", True, True, False,
              "every MAML++ component with a first-order meta-gradient"),
    Algorithm("anil", "ANIL", False, True, True,
              "only the head adapts in the inner loop, with MAML++'s "
              "multi-step loss and learned rates (Raghu et al. 2020)"),
)}
# The algorithms the comparison runs by default: the write-up's three and
# first-order MAML++.
COMPARED = ("maml", "fomaml", "mamlpp", "mamlpp_first_order")


def get(name: str) -> Algorithm:
  """The algorithm called ``name``; ValueError listing the valid names."""
  if name not in ALGORITHMS:
    raise ValueError(f"algorithm {name!r} is unknown; valid: "
                     f"{', '.join(ALGORITHMS)}.")
  return ALGORITHMS[name]


def from_flags(first_order: bool, plus_plus: bool) -> Algorithm:
  """The algorithm that ``train_maml``'s two flags select."""
  for a in ALGORITHMS.values():
    if (a.first_order, a.plus_plus, a.head_only) == (
        bool(first_order), bool(plus_plus), False):
      return a
  raise AssertionError("every flag pair has an algorithm")
