"""A griffe extension that reads medseg's docstrings the way they are written, for the API reference.

medseg's docstrings are Google style with two habits from Sphinx: ``Example:`` sections (griffe's Google parser
knows ``Examples:``, and would render the doctest lines as Markdown) and reST roles such as
``:class:`~medseg.models.SegOutput``` (rendered here as code: the short name for ``~``, the full path otherwise).
``mkdocs.yml`` loads it through the mkdocstrings option ``extensions``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_ROLE = re.compile(r":(?:mod|func|class|meth|data|attr|obj|exc):`(~?)([\w.]+)`")


def _short(match: re.Match[str]) -> str:
    tilde, path = match.group(1), match.group(2)
    return f"`{path.rsplit('.', 1)[-1] if tilde else path}`"


class MedsegDocstrings(griffe.Extension):
    """Rewrite ``Example:`` as ``Examples:`` and reST roles as code in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the docstring of one object.

        Args:
            obj: the object griffe just loaded.
            **kwargs: the other arguments of the event.
        """
        if obj.docstring is not None:
            text = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
            obj.docstring.value = _ROLE.sub(_short, text)
