"""Numbers laid out as R prints them: ``format(digits=)``, ``format.pval``, ``printCoefmat``, lme4's tables.

Shared by the point fits' ``summary()`` (lme4's glmer, glmmTMB's families).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats as st

__all__ = ["decimals", "rformat", "rformat_sci", "format_pval", "signif_stars", "abbreviate", "corr_table", "coef_table"]


def decimals(v: float, digits: int) -> int:
    """Decimals R's ``format(v, digits=)`` needs for ``digits`` significant digits."""
    if v == 0 or not np.isfinite(v):
        return 0
    e = math.floor(math.log10(abs(v)))
    dec = max(0, digits - 1 - e)
    s = f"{abs(v):.{dec}f}"
    if "." in s:
        s = s.rstrip("0")
        return len(s.split(".")[1]) if "." in s else 0
    return 0


def rformat(values, digits: int) -> list[str]:
    """R's ``format(x, digits=)`` of a vector: common decimals, fixed notation."""
    vals = [float(v) for v in values]
    dec = max((decimals(v, digits) for v in vals), default=0)
    return [f"{v:.{dec}f}" for v in vals]


def rformat_sci(values, digits: int) -> list[str]:
    vals = [float(v) for v in values]
    sig = 1
    for v in vals:
        m = f"{v:.{digits - 1}e}".split("e")[0].rstrip("0").rstrip(".")
        sig = max(sig, len(m.replace("-", "").replace(".", "")))
    out = []
    for v in vals:
        mant, ex = f"{v:.{sig - 1}e}".split("e")
        out.append(f"{mant}e{int(ex):+03d}")
    return out


def format_pval(p: np.ndarray, digits: int = 3) -> list[str]:
    """R's ``format.pval`` with printCoefmat's settings."""
    eps = np.finfo(float).eps
    out = [""] * len(p)
    small = p < eps
    rest = np.flatnonzero(~small)
    expo = np.floor(np.log10(np.where(p > 0, p, 1e-50)))
    fixp = [i for i in rest if expo[i] >= -3 or (expo[i] == -4 and digits > 1)]
    sci = [i for i in rest if i not in fixp]
    for i, s in zip(fixp, rformat(p[fixp], digits)):
        out[i] = s
    for i, s in zip(sci, rformat_sci(p[sci], digits)):
        out[i] = s
    for i in np.flatnonzero(small):
        out[i] = "< 2e-16"
    return out


def signif_stars(p: float) -> str:
    for cut, s in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return s
    return " "


def abbreviate(name: str, minlength: int) -> str:
    """R's ``abbreviate(name, minlength)`` for one name without spaces.

    Lower-case vowels go first, from the right, then lower-case letters,
    then any character; the first character stays.
    """
    chars = list(name)
    for drop in (lambda c: c in "aeiou", str.islower, lambda c: True):
        i = len(chars) - 1
        while len(chars) > minlength and i > 0:
            if drop(chars[i]):
                del chars[i]
            i -= 1
    return "".join(chars)


def corr_table(vcov: np.ndarray, names: list[str]) -> list[str]:
    """lme4's "Correlation of Fixed Effects" block (none for one effect)."""
    p = len(names)
    if p < 2:
        return []
    if p > 12:
        return [
            "",
            f"Correlation matrix not shown by default, as p = {p} > 12.",
            "Use print(x, correlation=TRUE)  or",
            "    vcov(x)        if you need it",
        ]
    sd = np.sqrt(np.diag(vcov))
    corr = vcov / np.outer(sd, sd)
    cells = [f"{v:.3f}" for v in np.round(corr, 3).ravel()]
    w = max(len(c) for c in cells)
    cells = np.array([c.rjust(w) for c in cells]).reshape(p, p)
    rows = [abbreviate(n, 11) for n in names]
    cols = [abbreviate(n, 6) for n in names]
    wr = max(len(r) for r in rows[1:])
    widths = [max(w, len(c)) for c in cols[:-1]]
    lines = ["", "Correlation of Fixed Effects:"]
    lines.append(" " * wr + " " + " ".join(c.ljust(cw) for c, cw in zip(cols[:-1], widths)))
    for i in range(1, p):
        vals = [cells[i, j] if j < i else "" for j in range(p - 1)]
        lines.append(rows[i].ljust(wr) + " " + " ".join(v.ljust(cw) for v, cw in zip(vals, widths)))
    return lines


def coef_table(est: np.ndarray, se: np.ndarray, names) -> list[str]:
    """printCoefmat(digits = 4) of estimates, SEs, z values and p-values."""
    digits = 4
    acs = np.abs(np.concatenate([est, se]))
    acs = acs[np.isfinite(acs) & (acs != 0)]
    digmin = 1 + np.floor(np.log10([acs.min(), acs.max()])) if len(acs) else np.zeros(2)
    dec = int(max(1, *(digits - digmin)))
    cs = rformat(np.round(np.concatenate([est, se]), dec), digits)
    z = est / se
    zs = rformat(np.round(z, 3), digits)
    p = 2 * st.norm.sf(np.abs(z))
    ps = format_pval(p)
    stars = [signif_stars(v) for v in p]
    cols = [
        ("Estimate", cs[: len(est)]),
        ("Std. Error", cs[len(est):]),
        ("z value", zs),
        ("Pr(>|z|)", ps),
    ]
    w0 = max(len(n) for n in names)
    widths = [max(len(h), *(len(v) for v in vals)) for h, vals in cols]
    lines = [" " * w0 + " " + " ".join(h.rjust(w) for (h, _), w in zip(cols, widths)) + "    "]
    for i, name in enumerate(names):
        cells = " ".join(vals[i].rjust(w) for (_, vals), w in zip(cols, widths))
        lines.append(f"{name.ljust(w0)} {cells} {stars[i].ljust(3)}")
    lines.append("---")
    lines.append("Signif. codes:  0 ‘***’ 0.001 ‘**’ 0.01 ‘*’ 0.05 ‘.’ 0.1 ‘ ’ 1")
    return lines
