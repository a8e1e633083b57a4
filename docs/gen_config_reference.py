"""Generate the configuration reference page from the pydantic schema in ``medseg.config``.

Every key of :class:`medseg.config.ExperimentConfig`, its nested sections included, becomes one table row: the
dotted key, its type and bounds, its default and the description written in the ``Attributes:`` section of its
class docstring. A key without a description is an error, so the page can only be built when the schema is fully
documented. ``docs/hooks.py`` adds the page to the site as ``configuration.md``; run this file to print it.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from typing import Any, Literal

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from medseg.config import ExperimentConfig

__all__ = ["ConfigReferenceError", "config_reference", "describe_attributes", "escape_html"]


class ConfigReferenceError(RuntimeError):
    """The schema cannot be documented (a key without a description)."""


_ROLE = re.compile(r":(?:mod|func|class|meth|data|attr|obj):`~?([\w.]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_ATTRIBUTE = re.compile(r"^    (\w+): ?(.*)$")


def _markdown(text: str) -> str:
    """Docstring markup (reST roles, double backquotes) as Markdown, on one line, safe inside a table cell."""
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    text = _LITERAL.sub(lambda m: f"`{m.group(1)}`", text)
    return escape_html(" ".join(text.split())).replace("|", "\\|")


def escape_html(text: str) -> str:
    """Escape plain text for Markdown outside backquoted code: ``runs/<name>`` is no HTML tag, ``[a][b]`` no link.

    Args:
        text: Markdown text.

    Returns:
        The text with ``&`` and ``<`` written as entities and ``[`` escaped, outside code spans.
    """
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace("[", "\\[")
    return "`".join(parts)


def describe_attributes(cls: type) -> tuple[str, dict[str, str]]:
    """Split a Google-style class docstring into its prose and its ``Attributes:`` entries.

    Args:
        cls: a class whose docstring may hold an ``Attributes:`` section (four-space indented ``name: text``
            entries, continuation lines indented further).

    Returns:
        ``(prose, {attribute: description})``: the prose is the docstring without the section, as Markdown.
    """
    prose: list[str] = []
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_section = False
    for line in (inspect.getdoc(cls) or "").splitlines():
        if line.strip() == "Attributes:":
            in_section = True
            continue
        if in_section and line and not line.startswith(" "):
            in_section = False
        if not in_section:
            prose.append(line)
            continue
        match = _ATTRIBUTE.match(line)
        if match:
            current = entries.setdefault(match.group(1), [])
            current.append(match.group(2))
        elif current is not None and line.strip():
            current.append(line.strip())
    paragraphs = [_markdown(p) for p in "\n".join(prose).split("\n\n") if p.strip()]
    return "\n\n".join(paragraphs), {name: _markdown(" ".join(text)) for name, text in entries.items()}


def _type_name(annotation: Any) -> str:
    """A readable name of a field's type: ``int``, ``float or null``, ``one of `a`, `b```, ``list of str`` ..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "`null`"
    if annotation is Any:
        return "any"
    if origin is Literal:
        choices = ", ".join(f"`{value}`" for value in args)
        return choices if len(args) == 1 else f"one of {choices}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if origin is tuple:
        return "[" + ", ".join(_type_name(arg) for arg in args) + "]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return f"`{getattr(annotation, '__name__', str(annotation))}`"


_BOUNDS = ((annotated_types.Ge, "ge", "≥"), (annotated_types.Gt, "gt", ">"), (annotated_types.Le, "le", "≤"))
_UPPER = ((annotated_types.Lt, "lt", "<"),)


def _bounds(info: FieldInfo) -> str:
    """The numeric bounds of a field, e.g. ``≥ 0, < 1``."""
    parts = []
    for item in info.metadata:
        for kind, attribute, symbol in (*_BOUNDS, *_UPPER):
            if isinstance(item, kind):
                parts.append(f"{symbol} {getattr(item, attribute)}")
    return ", ".join(parts)


def _plain(value: Any) -> Any:
    """A default value as plain YAML data (tuples as lists, sections as dicts)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _default(info: FieldInfo) -> str:
    """A field's default as inline YAML, or *required*."""
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "*required*"
    else:
        value = info.default
    text = yaml.safe_dump(_plain(value), default_flow_style=True, allow_unicode=True).strip()
    text = text.removesuffix("\n...").strip()
    return f"`{text}`"


def _section_model(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """The nested model of a field typed as a section or a list of sections, and whether it is a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, True
    return None


def _anchor(path: str) -> str:
    return path.replace("[]", "").replace(".", "-") or "top-level"


def _sections(model: type[BaseModel], path: str) -> list[str]:
    """The Markdown of ``model``'s section and of every section nested in it, depth first."""
    prose, attributes = describe_attributes(model)
    title = f"`{path}`" if path else "Top level"
    lines = [
        f"## {title} {{#{_anchor(path)}}}",
        "",
        prose,
        "",
        "| key | type | default | description |",
        "|---|---|---|---|",
    ]
    nested: list[tuple[type[BaseModel], str]] = []
    for name, info in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        description = attributes.get(name) or (_markdown(info.description) if info.description else "")
        if not description:
            raise ConfigReferenceError(
                f"{model.__name__}.{name} ({key}) has no description: add it to the Attributes section of the "
                f"{model.__name__} docstring in src/medseg/config.py"
            )
        section = _section_model(info.annotation)
        if section is not None:
            child, is_list = section
            child_path = f"{key}[]" if is_list else key
            nested.append((child, child_path))
            kind = "list of sections" if is_list else "section"
            type_text = f"[{kind}](#{_anchor(child_path)})"
            default = "`[]`" if is_list else "see the section"
        else:
            bounds = _bounds(info)
            type_text = _type_name(info.annotation) + (f" ({bounds})" if bounds else "")
            default = _default(info)
        lines.append(f"| `{key}` | {type_text} | {default} | {description} |")
    lines.append("")
    for child, child_path in nested:
        lines += _sections(child, child_path)
    return lines


_INTRO = """# Configuration reference

One YAML file describes a whole experiment; `medseg train` validates it against the schema below (the pydantic
models of `medseg.config`). This page is generated from that schema when the documentation is built, so it lists
every key with its type, bounds, default and description.

- Unknown keys and values of the wrong type are refused with an error that names the key and, for a misspelt key,
  the closest valid one.
- Any key can be overridden on the command line with a dotted `key=value`:
  `medseg train configs/unet-kvasir.yaml train.epochs=1 data.image_size=64` (values are read as YAML:
  `data.transforms.scale=[0.8,1.2]`, `model.checkpoint=null`); in a recipe with `stages`, an override also applies
  to every stage.
- Configured paths (`data.root`, `data.split_file`, `data.cache_dir`, `model.checkpoint`) may use
  `${VAR}`, `${VAR:-default}` and `~`; a relative path resolves against the folder of the YAML file it is written
  in. A run folder's `config.yaml` holds the fully resolved configuration and trains again as it is.
- `loss.terms` and `stages` are lists of sections: each item has the keys of the section of that name.

Sections: [top level](#top-level), [`model`](#model), [`data`](#data), [`loss`](#loss), [`optim`](#optim),
[`scheduler`](#scheduler), [`train`](#train), [`eval`](#eval), [`stages[]`](#stages).
"""


def config_reference(schema: type[BaseModel] = ExperimentConfig) -> str:
    """Render the configuration reference page.

    Args:
        schema: the root model of the configuration (medseg's experiment schema).

    Returns:
        The Markdown page: an introduction, one table per section, and the complete default configuration.

    Raises:
        ConfigReferenceError: a key of the schema has no description.
    """
    defaults = yaml.safe_dump(schema().model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    lines = [_INTRO, *_sections(schema, "")]
    lines += [
        "## Every default {#every-default}",
        "",
        "The configuration that an empty YAML file gives (the built-in synthetic dataset):",
        "",
        "```yaml",
        defaults.rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(config_reference())
