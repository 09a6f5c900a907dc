"""The names of FERPlus' label schemes, without the parser: what a recipe may name (`label_mode`) is
checked where pandas is not installed (the GPU kit, benchmarks/gpu)."""

LABEL_MODES = ("majority", "probability", "crossentropy", "multi_target", "seed_distribution")
"""Training label schemes.

* ``majority``: one-hot of the class with more than half of the kept votes.
* ``probability``: the distribution over the (at most 3) top classes covering 75% of the votes; the
  reference draws a one-hot target from it for every minibatch (the training input pipeline does).
* ``crossentropy``: the same distribution, used as the soft target of a cross-entropy loss.
* ``multi_target``: every class with at least 30% of the votes is a target: ``(1 - 0.001) * mask + 0.001``.
* ``seed_distribution``: the course notebook's rule: the 8 emotion counts (no vote removed) divided
  by their sum; rows whose 8 emotion counts are all zero are dropped.
"""

REFERENCE_MODES = LABEL_MODES[:4]
"""The modes of the FERPlus reference preparation (single votes removed, unknown/NF winners dropped)."""

EVALUATION_MODE = "majority"
"""Validation and test always use this scheme (the reference reads them with ``"majority"``)."""
