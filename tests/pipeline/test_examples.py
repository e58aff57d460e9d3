"""The example configurations parse, round-trip and validate; docs/pipeline.md's
configuration reference and table columns match the code."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from fmri2image.pipeline.config import _SECTIONS, RunConfig, dump_toml, load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))
DOC = ROOT / "docs" / "pipeline.md"

#: Database keywords (the rest are folders, which need I/O to check).
KEYWORDS = ("prototypes", "text-prototypes", "text-prototypes:1k", "text-prototypes:21k")


def config_keys() -> dict[str, typing.Any]:
    """Every configuration key (``models``, ``data.god``, ...) and its default."""
    out: dict[str, typing.Any] = {}

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            if not prefix and f.name in _SECTIONS:
                walk(_SECTIONS[f.name], f"{f.name}.")
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out[prefix + f.name] = default

    walk(RunConfig, "")
    return out


def doc_section(heading: str) -> str:
    """The text under ``heading`` (a Markdown heading line) up to the next heading of
    the same or a higher level."""
    text = DOC.read_text(encoding="utf-8")
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = lines.index(heading) + 1
    end = next(
        (i for i in range(start, len(lines)) if re.match(rf"^#{{1,{level}}} ", lines[i])),
        len(lines),
    )
    return "\n".join(lines[start:end])


def table_rows(section: str) -> list[list[str]]:
    """The body rows of the Markdown tables in ``section`` whose first cell is a
    backticked name: the cells, stripped."""
    rows = []
    for line in section.splitlines():
        if re.match(r"^\|\s*`", line):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_parses_round_trips_and_validates(path, tmp_path):
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)
    saved = cfg.save(tmp_path)
    assert load_config(saved) == cfg
    cfg.validate()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_names_known_models_usable_with_its_databases(path):
    """validate() does not look models up; the run's preflight does.  The same check
    here, without weights: every model is registered, and every keyword database is
    one each model can use (folders need the data, so they are left out)."""
    from fmri2image.pipeline.preflight import check_encoders_and_databases, parse_database

    cfg = load_config(path)
    keywords = [parse_database(d) for d in cfg.retrieval.databases if d in KEYWORDS]
    check_encoders_and_databases(cfg.models, keywords)


def test_examples_exist():
    names = {p.name for p in EXAMPLES}
    assert "compare.toml" in names


def test_demo_like_is_the_demo_configuration():
    from fmri2image.pipeline.demo import demo_config

    path = ROOT / "examples" / "demo-like.toml"
    if not path.exists():
        pytest.skip("no examples/demo-like.toml")
    demo = demo_config("demo-output")
    cfg = load_config(path)
    # Its own results folder, and the demo's stage cache (so every stage is reused).
    assert cfg.cache == str(Path(demo.out) / "cache")
    assert dataclasses.replace(cfg, out=demo.out, cache=None) == demo


def test_doc_reference_lists_every_key_with_its_default():
    rows = table_rows(doc_section("### Configuration reference"))
    documented = {}
    for cells in rows:
        assert len(cells) == 4, f"reference row needs key | type | default | meaning: {cells}"
        key = cells[0].strip("`")
        assert key not in documented, f"{key} documented twice"
        documented[key] = cells[2]
    keys = config_keys()
    assert sorted(documented) == sorted(keys), (
        f"only in the doc: {sorted(set(documented) - set(keys))}; "
        f"only in the code: {sorted(set(keys) - set(documented))}"
    )
    for key, default in keys.items():
        shown = documented[key]
        if default is None:
            assert shown == "unset", f"{key}: default None is written 'unset', got {shown}"
            continue
        expected = dump_toml({"v": default}).strip().removeprefix("v = ")
        assert re.sub(r"\s", "", shown.strip("`")) == re.sub(r"\s", "", expected), (
            f"{key}: the doc says {shown}, the code {expected}"
        )


def test_doc_tables_list_every_column_in_order():
    from fmri2image.pipeline.tables import TABLE_COLUMNS

    rows = table_rows(doc_section("## Tables"))
    documented = {
        cells[0].strip("`"): tuple(c.strip().strip("`") for c in cells[1].split(","))
        for cells in rows
        if len(cells) == 2
    }
    assert documented == dict(TABLE_COLUMNS)
