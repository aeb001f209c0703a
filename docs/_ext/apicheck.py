"""Every public name of bayesmer has a numpydoc docstring: the docs build fails otherwise.

The public surface is ``bayesmer.__all__`` (and :data:`EXTRA`), the public
functions and classes of the submodules users call (:data:`SUBMODULES`) and the
public methods of :class:`bayesmer.BayesFit`. A function or method needs a summary, a
``Parameters`` section naming every parameter (``self`` and ``cls`` aside), a
``Returns`` (or ``Yields``) section unless it returns nothing, and an
``Examples`` section. A class needs a summary and an ``Examples`` section
(exceptions: a summary only); a module needs a summary.

As a Sphinx extension it emits one warning per gap when the build starts, so
``sphinx-build -W`` fails; ``tests/test_docs.py`` calls :func:`problems` too.
"""

from __future__ import annotations

import importlib
import inspect
import typing

SUBMODULES = ("bayesmer.datasets", "bayesmer.plots", "bayesmer.sources", "bayesmer.checking")
# public names of the package that are not in its __all__ (bayesmer.glmer is the function; the
# rest are looked up lazily by bayesmer.__getattr__, as the names of __all__ are)
EXTRA = ("glmer", "GlmerFit", "glmmtmb", "FamilyFit", "anova", "datagrid", "parse_hypothesis", "InterpretError")


def _returns_nothing(obj) -> bool:
    try:
        hints = typing.get_type_hints(obj)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to the raw one
        hints = getattr(obj, "__annotations__", {})
    ret = hints.get("return", inspect.Signature.empty)
    return ret is None or ret is type(None) or ret == "None"


def _params(obj) -> list[str]:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    out = []
    for p in sig.parameters.values():
        if p.name in ("self", "cls"):
            continue
        if p.kind is p.VAR_POSITIONAL:
            out.append("*" + p.name)
        elif p.kind is p.VAR_KEYWORD:
            out.append("**" + p.name)
        else:
            out.append(p.name)
    return out


def _documented(section) -> set[str]:
    names = set()
    for param in section:
        for part in param.name.split(","):
            part = part.strip()
            if part:
                names.add(part)
                names.add(part.lstrip("*"))
    return names


def check_callable(label: str, obj) -> list[str]:
    """The gaps in the docstring of function or method ``obj``."""
    from numpydoc.docscrape import FunctionDoc

    if not inspect.getdoc(obj):
        return [f"{label}: no docstring"]
    doc = FunctionDoc(obj)
    out = []
    if not "".join(doc["Summary"]).strip():
        out.append(f"{label}: no summary line")
    params = _params(obj)
    if params:
        have = _documented(doc["Parameters"]) | _documented(doc["Other Parameters"])
        missing = [p for p in params if p not in have and p.lstrip("*") not in have]
        if missing:
            out.append(f"{label}: Parameters does not document {missing}")
    if not _returns_nothing(obj) and not (doc["Returns"] or doc["Yields"]):
        out.append(f"{label}: no Returns section")
    if not "".join(doc["Examples"]).strip():
        out.append(f"{label}: no Examples section")
    return out


def check_class(label: str, cls) -> list[str]:
    """The gaps in the docstring of class ``cls`` (an exception needs only a summary)."""
    from numpydoc.docscrape import ClassDoc

    if not inspect.getdoc(cls) or cls.__doc__ is None:
        return [f"{label}: no docstring"]
    if issubclass(cls, BaseException):
        return []
    doc = ClassDoc(cls, config={"show_class_members": False})
    return [] if "".join(doc["Examples"]).strip() else [f"{label}: no Examples section"]


def public_methods(cls) -> list[str]:
    """Public methods of ``cls`` defined in bayesmer (properties and dataclass fields aside)."""
    return [
        name
        for name, value in vars(cls).items()
        if not name.startswith("_") and inspect.isfunction(value)
    ]


def targets():
    """(label, object) for every public name the check covers."""
    import bayesmer

    seen = set()
    for name in (*bayesmer.__all__, *EXTRA):
        obj = getattr(bayesmer, name)
        yield f"bayesmer.{name}", obj
        seen.add(id(obj))
    for modname in SUBMODULES:
        mod = importlib.import_module(modname)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and id(obj) not in seen:
                seen.add(id(obj))
                yield f"{modname}.{name}", obj
    for name in public_methods(bayesmer.BayesFit):
        yield f"bayesmer.BayesFit.{name}", getattr(bayesmer.BayesFit, name)


def problems() -> list[str]:
    """Every gap in the public docstrings, one line each."""
    out = []
    for label, obj in targets():
        if inspect.ismodule(obj):
            if not (obj.__doc__ or "").strip():
                out.append(f"{label}: module without a docstring")
        elif inspect.isclass(obj):
            out.extend(check_class(label, obj))
        elif callable(obj):
            out.extend(check_callable(label, obj))
    return out


def _on_builder_inited(app) -> None:
    from sphinx.util import logging

    log = logging.getLogger("bayesmer.apicheck")
    for line in problems():
        log.warning("public docstring: %s", line, type="bayesmer", subtype="apicheck")


def setup(app):
    app.connect("builder-inited", _on_builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
