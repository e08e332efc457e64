r"""Trains MAML, FOMAML, MAML++ and first-order MAML++ side by side: see
:mod:`metalearn.commands.compare`.

  python experiments/compare.py
  python experiments/compare.py --config=compare:full
  python experiments/compare.py --config=experiments/configs/cpu_small.py \
      --algorithms=maml,fomaml --config.meta_steps=200 --output_dir=runs/cmp

The same code as the installed ``metalearn-compare`` command.
"""

from metalearn.commands import compare

if __name__ == "__main__":
  compare.run()
