"""The one place that names a model's parameters, dims and labels.

Every module that writes or reads a variable of the DataTree, a prior slot or
a row of a table asks here, so one parameter has one name everywhere:

==========================  ======================  ===========================
parameter                   DataTree variable       label (tables, prior slot)
==========================  ======================  ===========================
fixed effect ``Days``       ``beta`` [fixed=Days]   ``Days``
SD of ``Days`` in Subject   ``sd_Subject`` [Days]   ``sd(Days|Subject)``
corr. of two columns        ``corr_Subject``        ``corr((Intercept),Days|Subject)``
                            [``"(Intercept),Days"``]
random effects              ``b_Subject``           ``b(Days|Subject)[308]``
residual SD                 ``sigma``               ``sigma``
a family's parameter        ``shape``, ``nu``,      ``shape`` ... (brms's names)
                            ``phi``, ``zi``
ordinal thresholds          ``Intercept``           ``Intercept[1]`` .. ``Intercept[K-1]``
                            [threshold=1..K-1]
==========================  ======================  ===========================

The family parameters (:mod:`bayesmer.families`) keep brms's names as they
are; the thresholds of ``cumulative`` are one variable over
:data:`THRESHOLD_DIM`, whose coordinates are the integers 1..K-1 (threshold k
lies between categories k and k+1; the categories' labels are the
``observed_data`` group's ``category`` coordinate, :data:`CATEGORY_DIM`).

Dims are chosen so that no two variables share a dim at different positions:
arviz-stats 1.3's ``summary`` of a whole tree mislabels rows when they do
(``sd_Subject`` over ``Subject_term`` next to ``b_Subject`` over
``Subject_level x Subject_term`` swapped subjects' slopes), so the random
effects' columns have a dim of their own, ``<term>_effect``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BETA",
    "SIGMA",
    "FIXED_DIM",
    "OBS_DIM",
    "THRESHOLDS",
    "THRESHOLD_DIM",
    "CATEGORY_DIM",
    "threshold_label",
    "sd_var",
    "corr_var",
    "corr_chol_var",
    "z_var",
    "b_var",
    "level_dim",
    "term_dim",
    "effect_dim",
    "pair_dim",
    "pairs",
    "pair_labels",
    "corr_matrix",
    "sd_label",
    "corr_label",
    "corr_slot",
    "mean_var",
]

BETA = "beta"
SIGMA = "sigma"
FIXED_DIM = "fixed"
OBS_DIM = "obs"
#: the thresholds of an ordinal model: variable ``Intercept`` over this dim, coordinates 1..K-1
THRESHOLDS = "Intercept"
THRESHOLD_DIM = "threshold"
#: an ordinal response's categories (labels, in order) in the observed and predictive groups
CATEGORY_DIM = "category"


def threshold_label(k: int) -> str:
    """``Intercept[k]``: brms's name of threshold k (1-based)."""
    return f"{THRESHOLDS}[{int(k)}]"


def sd_var(term: str) -> str:
    """Variable of a term's SDs, over :func:`term_dim`."""
    return f"sd_{term}"


def corr_var(term: str) -> str:
    """Variable of a term's correlations, a vector over :func:`pair_dim` (as brms's ``cor_``)."""
    return f"corr_{term}"


def corr_chol_var(term: str) -> str:
    """The sampled Cholesky factor of a term's correlation matrix (not kept in the posterior)."""
    return f"corr_chol_{term}"


def z_var(term: str) -> str:
    """Standardised random effects under the ``"full"`` strategy (not kept)."""
    return f"z_{term}"


def b_var(term: str) -> str:
    """Random effects of a term, over (:func:`level_dim`, :func:`effect_dim`)."""
    return f"b_{term}"


def level_dim(term: str) -> str:
    return f"{term}_level"


def term_dim(term: str) -> str:
    """The columns of a term, as indexed by its SDs (and their priors)."""
    return f"{term}_term"


def effect_dim(term: str) -> str:
    """The columns of a term, as indexed by its random effects (see the module note)."""
    return f"{term}_effect"


def pair_dim(term: str) -> str:
    return f"{term}_pair"


def pairs(k: int) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of a k-column term, in brms's order."""
    return [(int(i), int(j)) for i, j in zip(*np.triu_indices(k, 1))]


def pair_labels(columns) -> list[str]:
    """Coordinates of :func:`pair_dim`: ``"(Intercept),Days"``."""
    columns = list(columns)
    return [f"{columns[i]},{columns[j]}" for i, j in pairs(len(columns))]


def corr_matrix(vec: np.ndarray, k: int) -> np.ndarray:
    """Correlation matrices (..., k, k) from their pair vectors (..., k(k-1)/2)."""
    vec = np.asarray(vec, dtype=float)
    out = np.broadcast_to(np.eye(k), vec.shape[:-1] + (k, k)).copy()
    for p, (i, j) in enumerate(pairs(k)):
        out[..., i, j] = out[..., j, i] = vec[..., p]
    return out


def sd_label(column: str, term: str) -> str:
    """``sd(Days|Subject)``: the prior slot and table label of one SD."""
    return f"sd({column}|{term})"


def corr_label(a: str, b: str, term: str) -> str:
    """``corr((Intercept),Days|Subject)``: one correlation."""
    return f"corr({a},{b}|{term})"


def corr_slot(term: str) -> str:
    """``corr(Subject)``: the prior slot of a term's correlation matrix."""
    return f"corr({term})"


def link_var(response: str) -> str:
    """The predictions' variable of the linear predictor, kept apart from a response named ``eta``."""
    return "eta" if response != "eta" else "eta_link"


def mean_var(response: str) -> str:
    """The predictions' variable of the mean (bambi's ``mu``), kept apart from a response named ``mu``."""
    return "mu" if response != "mu" else "mu_mean"
