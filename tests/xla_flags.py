"""The XLA flags of this suite (tests/conftest.py), and how to drop them.

Compiling dominates the suite's time, running its tiny programs does not:
XLA's CPU backend without LLVM optimisation and with its older fusion
emitters compiles a MAML++ meta-step about six times faster, and runs it
several times slower. The numbers the tests check do not depend on it.
Subprocesses and notebook kernels inherit the flags through the
environment; a child that trains for long gets :func:`optimising` instead.
"""

import os

FAST_COMPILE = ("--xla_backend_optimization_level=0",
                "--xla_cpu_use_fusion_emitters=false")


def with_fast_compile(flags: str) -> str:
  """``flags`` (an ``XLA_FLAGS`` value) plus :data:`FAST_COMPILE`."""
  return " ".join([flags] + [f for f in FAST_COMPILE if f not in flags]
                  ).strip()


def optimising(env=None) -> dict:
  """A copy of ``env`` (default ``os.environ``) without :data:`FAST_COMPILE`,
  for a child process that runs long enough for XLA's optimisations to pay."""
  env = dict(os.environ if env is None else env)
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if f not in FAST_COMPILE]
  env["XLA_FLAGS"] = " ".join(flags)
  return env
