"""The one base class of bayesmer's errors.

Every error that means "bad input, here is what to change" derives from
:class:`BayesmerError`; the command line reports those in one line and
anything else as a bug (with ``--debug`` for the traceback). Each subclass
also derives from the builtin a caller would expect (``ValueError``...), so
``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["BayesmerError", "SettingsError", "PredictionError", "LoadError", "SaveError", "SamplingError",
           "FitError"]


class BayesmerError(Exception):
    """Bad input to bayesmer, with a message naming the culprit."""


class SettingsError(BayesmerError, ValueError):
    """A sampler or model setting out of range (see :mod:`bayesmer.settings`)."""


class PredictionError(BayesmerError, ValueError):
    """New data that cannot be predicted as asked."""


class LoadError(BayesmerError, ValueError):
    """A file that is not a saved bayesmer fit."""


class SaveError(BayesmerError, OSError):
    """A fit or an output that could not be written (full disk, missing folder...), naming the path.

    The previous file at that path, if any, is left as it was.
    """


class SamplingError(BayesmerError, RuntimeError):
    """Draws that are not a posterior sample (NaN in the sampled variables, fewer draws than asked)."""


class FitError(BayesmerError, RuntimeError):
    """A point fit (REML/ML, glmer's Laplace) that has no answer on these data: a
    criterion that is not finite, perfect separation; the message says what to change."""
