"""MkDocs hooks of medseg's documentation site (``hooks:`` in ``mkdocs.yml``).

They add the pages and figures that are generated from the code at build time, so that none of them can go stale:

- ``configuration.md``: the configuration reference, from the pydantic schema (:mod:`gen_config_reference`);
- ``results/<name>.md``: each benchmark result table of ``benchmarks/results/`` as written by the benchmarks
  (with the ``.png`` figures they show), added to the navigation's "Benchmarks" section under its own title;
- ``methods/img/<name>.svg``: the architecture figures (:mod:`diagrams`);
- in ``cli.md``, the ``<!-- cli-reference -->`` marker becomes the reference of every command
  (:mod:`gen_cli_reference`).
"""

from __future__ import annotations

from pathlib import Path

from diagrams import all_diagrams
from gen_cli_reference import cli_reference
from gen_config_reference import config_reference
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

CLI_MARKER = "<!-- cli-reference -->"
RESULTS_FOLDER = Path("benchmarks") / "results"
RESULTS_SECTION = "Benchmarks"


def _results(config: MkDocsConfig) -> list[Path]:
    """The benchmark result tables, sorted by name."""
    return sorted((Path(config.config_file_path).parent / RESULTS_FOLDER).glob("*.md"))


def _title(path: Path) -> str:
    """The first Markdown heading of a file, or its name."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Append every benchmark result page to the navigation's "Benchmarks" section.

    Args:
        config: the site configuration; its ``nav`` must have a "Benchmarks" section (a list).

    Returns:
        The configuration.
    """
    for item in config.nav or []:
        if isinstance(item, dict) and isinstance(item.get(RESULTS_SECTION), list):
            item[RESULTS_SECTION] += [{_title(path): f"results/{path.name}"} for path in _results(config)]
            return config
    raise PluginError(f"mkdocs.yml: the nav needs a '{RESULTS_SECTION}' section (a list of pages)")


def _add(files: Files, config: MkDocsConfig, src_uri: str, content: str) -> None:
    """Add one generated file, refusing to shadow a file that exists in ``docs/``."""
    if files.get_file_from_path(src_uri) is not None:
        raise PluginError(f"docs/{src_uri} exists, but the documentation build generates it: remove the file")
    files.append(File.generated(config, src_uri, content=content))


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated pages and figures to the site's files.

    Args:
        files: the files found in ``docs/``.
        config: the site configuration.

    Returns:
        The files with the generated ones added.
    """
    _add(files, config, "configuration.md", config_reference())
    for result in _results(config):
        note = f"\n\n*Written by the benchmark into `{RESULTS_FOLDER / result.name}`; shown here as it is.*\n"
        _add(files, config, f"results/{result.name}", result.read_text(encoding="utf-8") + note)
    for figure in sorted((Path(config.config_file_path).parent / RESULTS_FOLDER).glob("*.png")):
        _add(files, config, f"results/{figure.name}", figure.read_bytes())  # figures the result pages show
    for name, svg in all_diagrams().items():
        _add(files, config, f"methods/img/{name}", svg)
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Put the generated command reference in place of its marker.

    Args:
        markdown: the page's Markdown.
        page: the page.
        config: the site configuration.
        files: the site's files.

    Returns:
        The Markdown, with the marker replaced on the page that has it.
    """
    if CLI_MARKER in markdown:
        return markdown.replace(CLI_MARKER, cli_reference())
    return markdown
