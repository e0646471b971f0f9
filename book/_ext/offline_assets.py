"""Sphinx extension for the course book: no page needs the internet to display.

* MathJax is served from the book's own ``_static/mathjax`` (copied from the
  ``django-static-mathjax`` wheel by ``coursetools.book``), not from a CDN:
  configured with ``mathjax_path`` in ``book/_config.yml``.
* The "Open in Colab" badge image at the top of every notebook points at
  colab.research.google.com; in the book it is replaced by a local copy of the badge
  (``_static/colab-badge.svg``), while its link still opens the notebook on Colab.
* A script that a theme extension adds twice is included once (no console error).
"""

from __future__ import annotations

from pathlib import Path

from docutils import nodes
from sphinx.util.osutil import relative_uri

BADGE = "colab.research.google.com/assets/colab-badge.svg"


def localise_badges(app, doctree, docname):
    if app.builder.format != "html":
        return
    local = relative_uri(app.builder.get_target_uri(docname), "_static/colab-badge.svg")
    for image in doctree.findall(nodes.image):
        if BADGE in image.get("uri", ""):
            image["uri"] = local
            image["candidates"] = {"*": local}


def drop_duplicate_scripts(app, exception):
    """sphinx-thebe and sphinx-togglebutton end up with their inline configuration script
    twice in every page under Jupyter Book 1.0; thebe's second copy fails in the browser
    ("Identifier 'THEBE_JS_URL' has already been declared"). Keep the first copy."""
    if exception or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        lines, seen, changed = [], set(), False
        for line in page.read_text().splitlines(keepends=True):
            stripped = line.strip()
            if stripped.startswith("<script>") and stripped.endswith("</script>"):
                if stripped in seen:
                    changed = True
                    continue
                seen.add(stripped)
            lines.append(line)
        if changed:
            page.write_text("".join(lines))


def setup(app):
    app.connect("doctree-resolved", localise_badges)
    app.connect("build-finished", drop_duplicate_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
