"""The docs match the code: every config key and every command is documented."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from pydantic import BaseModel

from syncd.cli import build_parser
from syncd.config import Config, CsvSource, LdapSource
from syncd.exit_codes import EXIT_CODES, exit_code_for

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
EXAMPLES = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "config").glob("*.yaml"))


def key_paths(model: type[BaseModel], prefix: str) -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        if field.exclude or name == "type":
            continue
        path = f"{prefix}.{name}" if prefix else name
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += key_paths(annotation, path)
        else:
            paths.append(path)
    return paths


def all_key_paths() -> list[str]:
    paths = [p for p in key_paths(Config, "") if not p.startswith("source")]
    paths += key_paths(CsvSource, "source") + key_paths(LdapSource, "source")
    return sorted(set(paths))


def test_readme_documents_every_config_key() -> None:
    missing = [path for path in all_key_paths() if f"`{path}`" not in README]
    assert missing == []


def test_example_configs_show_every_config_key() -> None:
    names = {path.rsplit(".", 1)[-1] for path in all_key_paths()}
    missing = sorted(n for n in names if not re.search(rf"^\s*#?\s*{n}:", EXAMPLES, re.M))
    assert missing == []


def test_readme_documents_every_command_and_exit_code() -> None:
    parser = build_parser()
    commands = next(
        action.choices
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    for command in commands:
        assert f"`{command}" in README, command
    for kind, code in EXIT_CODES:
        assert f"| {code} |" in README, (kind.__name__, code)
        assert exit_code_for(kind("x")) == code
