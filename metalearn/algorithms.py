"""The one algorithm table: a name -> what it sets on the one code path.

Every experiment (config, comparison, benchmark, report, ``train_maml``)
reads the algorithms from here. An algorithm is data, not code: each field
below switches one thing on the shared inner loop (:mod:`metalearn.core`)
and meta-step (:mod:`metalearn.step`); ``docs/algorithms.md`` tabulates them.
"""

from typing import Any, Callable, NamedTuple, Optional

from metalearn import imaml
from metalearn import proto
from metalearn import reptile
from metalearn import rules


class Algorithm(NamedTuple):
  """What one algorithm name means.

  Attributes:
    name: the key used in configs, flags and results (``maml``).
    label: the name a reader knows (``first-order MAML++``).
    summary: one line for reports.
    first_order: ``stop_gradient`` on every inner gradient: the
      meta-gradient drops its second-order terms.
    multi_step_loss: MAML++'s query loss after every inner step, annealed
      to the last step over ``msl_epochs``.
    learn_inner_lrs: the outer optimizer learns the inner rates (MAML++'s
      per-layer per-step rates, Meta-SGD's per-element ones).
    per_element_lrs: one inner rate per parameter element (Meta-SGD), not
      one per tensor.
    per_step_bn: one batch-norm affine per inner step (MAML++).
    anneals_order: first order for the first ``first_order_epochs``, then
      second order (MAML++'s derivative-order annealing).
    head_only: only the classifier head adapts in the inner loop (ANIL);
      the body runs once per task and gets no inner gradient.
    outer: what the outer optimizer follows, a
      :class:`metalearn.rules.OuterRule`: the meta-gradient (the gradient
      of the query loss after adaptation), Reptile's move of the
      initialisation towards the adapted weights (Nichol et al. 2018) or
      iMAML's implicit gradient (:mod:`metalearn.imaml`).
    defaults: config fields the algorithm's own protocol sets, ``((field,
      value), ...)``; :func:`metalearn.configs.for_algorithm` applies them,
      so a config and ``train_maml`` of the same name train the same thing
      (Reptile: inner Adam with ``beta1 = 0``, outer SGD on the move).
    inner: ``inner(update, config) -> update``: what the algorithm makes of
      the config's inner update (``inner_optimizer``), or ``None`` to use
      it as it is: Proto-MAML starts it from the prototype head
      (:func:`metalearn.proto.prototype_init`), ProtoNet replaces it with
      the prototype classifier (:data:`metalearn.proto.PROTONET`), iMAML
      with proximal SGD (:func:`metalearn.imaml.proximal_sgd`).
    prototypes: the inner update reads the body's features, so it is handed
      the model's body/head split whatever ``fast_head`` says (the model
      needs ``body`` and ``head``; the loss must be cross-entropy).
    configure_outer: ``configure_outer(config) -> OuterRule``: ``outer``
      with its hyperparameters read from the config (iMAML's
      ``imaml_lambda`` and ``imaml_cg_steps``), or ``None``: ``outer``.
    inner_loop: whether tasks adapt by steps at all (ProtoNet's do not).
  """
  name: str
  label: str
  summary: str
  first_order: bool = False
  multi_step_loss: bool = False
  learn_inner_lrs: bool = False
  per_element_lrs: bool = False
  per_step_bn: bool = False
  anneals_order: bool = False
  head_only: bool = False
  outer: rules.OuterRule = rules.META_GRADIENT
  defaults: tuple[tuple[str, Any], ...] = ()
  inner: Optional[Callable[[rules.InnerUpdate, Any],
                            rules.InnerUpdate]] = None
  prototypes: bool = False
  configure_outer: Optional[Callable[[Any], rules.OuterRule]] = None
  inner_loop: bool = True

  def inner_update(self, config) -> rules.InnerUpdate:
    """How each task adapts under ``config``, in training and at test time:
    the config's ``inner_optimizer``, as the algorithm's ``inner`` makes
    it."""
    update = rules.INNER_UPDATES[config.inner_optimizer](config)
    return update if self.inner is None else self.inner(update, config)

  def outer_rule(self, config) -> rules.OuterRule:
    """The outer rule this algorithm follows under ``config``."""
    return (self.outer if self.configure_outer is None
            else self.configure_outer(config))

  @property
  def differentiates_inner_loop(self) -> bool:
    """Whether its meta-gradient may flow back through an inner loop, so
    that first or second order means something: not ProtoNet (no inner
    loop), iMAML (an implicit gradient) or Reptile (no meta-gradient)."""
    return self.inner_loop and self.outer is rules.META_GRADIENT

  @property
  def plus_plus(self) -> bool:
    """MAML++'s two defining parts: the multi-step loss and learned rates."""
    return self.multi_step_loss and self.learn_inner_lrs


_MAMLPP = dict(multi_step_loss=True, learn_inner_lrs=True, per_step_bn=True)
ALGORITHMS = {a.name: a for a in (
    Algorithm("maml", "MAML",
              "second order: the meta-gradient flows back through every "
              "inner step (Finn et al. 2017)"),
    Algorithm("fomaml", "FOMAML",
              "first order: inner gradients are constants, so the "
              "meta-gradient is the query gradient at the adapted weights",
              first_order=True),
    Algorithm("mamlpp", "MAML++",
              "MAML plus the multi-step loss, learned per-layer per-step "
              "inner rates, per-step batch norm and derivative-order "
              "annealing (Antoniou et al. 2019)",
              anneals_order=True, **_MAMLPP),
    Algorithm("mamlpp_first_order", "first-order MAML++",
              "every MAML++ component with a first-order meta-gradient",
              first_order=True, **_MAMLPP),
    Algorithm("anil", "ANIL",
              "only the head adapts in the inner loop, with MAML++'s "
              "multi-step loss and learned rates (Raghu et al. 2020)",
              multi_step_loss=True, learn_inner_lrs=True, anneals_order=True,
              head_only=True),
    Algorithm("metasgd", "Meta-SGD",
              "MAML with a learned inner rate for every parameter element "
              "(Li et al. 2017)",
              learn_inner_lrs=True, per_element_lrs=True),
    Algorithm("reptile", "Reptile",
              "no meta-gradient: the initialisation moves towards the "
              "weights adapted to each task (Nichol et al. 2018)",
              first_order=True, outer=reptile.REPTILE,
              defaults=(("inner_optimizer", "adam"), ("inner_adam_lr", 1e-3),
                        ("outer_optimizer", "sgd"), ("outer_lr", 1.0),
                        ("lr_schedule", "linear"), ("outer_lr_min", 0.0))),
    Algorithm("protonet", "ProtoNet",
              "no inner loop: queries are scored by their squared distance "
              "to the class means of the support embeddings (Snell et al. "
              "2017)",
              inner=proto.protonet_inner, prototypes=True, inner_loop=False,
              defaults=(("inner_steps", 1), ("eval_inner_steps", 1))),
    Algorithm("protomaml", "Proto-MAML",
              "MAML whose head starts each task from the class prototypes "
              "of the support embeddings (Triantafillou et al. 2020)",
              inner=proto.protomaml_inner, prototypes=True),
    Algorithm("imaml", "iMAML",
              "implicit meta-gradient: a proximal inner loop, and the "
              "query gradient solved through (I + H/lambda) by conjugate "
              "gradients (Rajeswaran et al. 2019)",
              outer=imaml.IMAML, inner=imaml.inner_from_config,
              configure_outer=imaml.from_config,
              # A scan over the inner steps: XLA on CPU keeps every step of
              # an unrolled loop alive, so only the scan's memory is flat.
              defaults=(("unroll", False),)),
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
  for name in COMPARED:
    a = ALGORITHMS[name]
    if (a.first_order, a.plus_plus) == (bool(first_order), bool(plus_plus)):
      return a
  raise AssertionError("every flag pair has an algorithm")
