"""Sphinx configuration of bayesmer's documentation site.

Build it from the repository root with::

    .venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

(the ``docs`` tools come with ``pip install -e '.[test]'`` or ``'.[docs]'``).
The gallery's notebooks are rendered as committed (without outputs): the test
suite executes them (``tests/test_notebooks.py``). Executing them again here made
the build take 439 s on the shared 2-core machine at load 7 (the notebooks 243,
48, 33 and 47 s), beyond the 4 minutes the suite can spare. ``BAYESMER_DOCS_EXECUTE=force`` executes them during the
build, with the small draws of ``tests/test_notebooks.py``, for a site that shows
their outputs.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(DOCS / "_ext"))

import bayesmer  # noqa: E402

project = "bayesmer"
author = "the bayesmer developers"
copyright = "2026, the bayesmer developers"
release = version = bayesmer.__version__

extensions = [
    "myst_nb",  # MyST Markdown pages and the notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
    "apicheck",  # every public name has a numpydoc docstring, or the build fails
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# --- the notebooks: copied from notebooks/ (their home, run by tests/test_notebooks.py) ---------
GALLERY = DOCS / "gallery"
for _nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
    _dest = GALLERY / _nb.name
    if not _dest.exists() or _dest.read_bytes() != _nb.read_bytes():
        shutil.copyfile(_nb, _dest)

# The notebooks find the repository's models/ and tests/data/ from their working folder, or its
# parent (notebooks/ in the repository). They run here in docs/gallery/: links to the two folders
# (not committed, not pages) let them find the same files.
for _name in ("models", "tests"):
    _link = GALLERY / _name
    if not _link.exists():
        _link.symlink_to(Path("..") / ".." / _name, target_is_directory=True)
exclude_patterns += ["gallery/models", "gallery/models/**", "gallery/tests", "gallery/tests/**"]

# with BAYESMER_DOCS_EXECUTE=force, executed at build time with small draws, as tests/test_notebooks.py
# runs them: the pages then show real output from short chains (every cell works; estimates are rough)
for _key, _value in {
    "BAYESMER_NB_DRAWS": "100",
    "BAYESMER_NB_TUNE": "100",
    "BAYESMER_NB_CHAINS": "2",
    "MPLBACKEND": "Agg",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}.items():
    os.environ.setdefault(_key, _value)
# the kernel's "python" is this interpreter's
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
nb_execution_mode = os.environ.get("BAYESMER_DOCS_EXECUTE", "off")
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_kernel_rgx_aliases = {".*": "python3"}
# a sampler's progress and warnings on stderr are not part of the story
nb_output_stderr = "remove"
nb_merge_streams = True

myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3

# --- API reference --------------------------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"
autodoc_default_options: dict = {}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

# the docstrings name types in words ("DataFrame", "int, optional"): not references
nitpicky = False
# (no intersphinx: the build must not need the network)
suppress_warnings: list = []  # none: every warning fails the -W build

# --- HTML -------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"bayesmer {version}"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc"],
}
html_sidebars = {"index": []}
