"""Reading the config file's YAML: bounded, strict about duplicate keys, and with a line per key.

PyYAML's ``safe_load`` keeps the last of two equal keys without a word (a second ``safety:``
section replaces the whole first one), reads whatever it is given to its end (a FIFO, /dev/zero,
a 59 MB file), expands aliases into as many values as a file asks for ("billion laughs") and
recurses once per nesting level. Here the file is checked before it is read, the document is
composed into nodes first, and the nodes are walked once, without recursion, to refuse duplicate
keys, bound the size and depth, and note the line of every key, so that an error about a key can
say where it is. Only then are the nodes turned into Python values.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from syncd.errors import ConfigError

# A syncd config is a few KiB (the annotated example, every key with its comment, is 8 KiB); a
# larger file is a mistake (the HR export given as the config?) that PyYAML would take seconds
# to parse, or minutes for tens of MB, before saying anything.
MAX_CONFIG_BYTES: Final = 256 * 1024
# Values after expanding aliases. The example has about 150; an alias bomb has billions.
MAX_YAML_VALUES: Final = 50_000
# Levels of nesting; the deepest key is 3 levels down (source.columns.anchor), a list item 4.
MAX_YAML_DEPTH: Final = 20

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_READ_CHUNK: Final = 64 * 1024

KeyPath = tuple[str | int, ...]


def dotted(path: KeyPath) -> str:
    """``("safety", "max_creates_per_cycle")`` as ``safety.max_creates_per_cycle``; list items
    as ``[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + str(part)
    return text or "(top level)"


@dataclass(frozen=True)
class YamlDocument:
    """The parsed file: its data, and the 1-based line of every key and list item by path."""

    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest enclosing key that is in the file (a missing
        key is reported at its section)."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def read_config_text(path: Path) -> str:
    """The file's text; refused before a byte is read when it is not a regular file or too big."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(
            f"config error in {path}: file not found",
            hint="pass --config FILE or set SYNCD_CONFIG",
        ) from None
    except OSError as exc:
        raise ConfigError(f"config error in {path}: cannot open it: {exc.strerror}") from None
    try:
        data = _read_regular_file(fd, path)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8-sig")  # a BOM from a Windows editor is fine
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"config error in {path}, line {line}: the file is not UTF-8 text",
            hint="save it as UTF-8",
        ) from None


def _read_regular_file(fd: int, path: Path) -> bytes:
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"config error in {path}: it is a directory; give the YAML file itself")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            f"config error in {path}: it is not a regular file (a FIFO, device or socket); "
            "give the YAML file itself"
        )
    too_big = ConfigError(
        f"config error in {path}: the file is larger than {MAX_CONFIG_BYTES // 1024} KiB; "
        "a syncd config is a few KiB (is this the right file?)"
    )
    if info.st_size > MAX_CONFIG_BYTES:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    # Read to the limit, not to st_size: the file may grow while it is read.
    while chunk := os.read(fd, _READ_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_CONFIG_BYTES:
            raise too_big
    return b"".join(chunks)


def parse_yaml(text: str, path: Path) -> YamlDocument:
    """Parse one YAML document; every problem is a ConfigError that names the line."""
    try:
        loader = yaml.SafeLoader(text)  # checks every character first (a NUL raises here)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error(path, text, exc)) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None)
        lines = _walk(node, path)
        return YamlDocument(loader.construct_document(node), lines)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error(path, text, exc)) from None
    except RecursionError:
        # PyYAML composes nested nodes recursively: thousands of `[` end here, not in a crash.
        raise ConfigError(
            f"config error in {path}: YAML nested hundreds of levels deep or more; a syncd "
            "config is a few levels deep"
        ) from None
    finally:
        loader.dispose()


def _walk(root: yaml.Node, path: Path) -> dict[KeyPath, int]:
    """The line of every key, found without recursion; refuses duplicate keys, a document
    that expands (through aliases) to more than MAX_YAML_VALUES values, or nests too deeply."""
    lines: dict[KeyPath, int] = {}
    problems: list[str] = []
    checked: set[int] = set()  # mapping nodes already checked for duplicates (aliases repeat)
    stack: list[tuple[yaml.Node, KeyPath]] = [(root, ())]
    values = 0
    while stack:
        node, where = stack.pop()
        values += 1
        if values > MAX_YAML_VALUES:
            raise ConfigError(
                f"config error in {path}: the file holds more than {MAX_YAML_VALUES} values once "
                "its YAML aliases (*name) are expanded; a syncd config has a few hundred"
            )
        if len(where) > MAX_YAML_DEPTH:
            raise ConfigError(
                f"config error in {path}, line {node.start_mark.line + 1}: YAML nested more than "
                f"{MAX_YAML_DEPTH} levels deep; a syncd config is a few levels deep"
            )
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault((*where, index), item.start_mark.line + 1)
                stack.append((item, (*where, index)))
        elif isinstance(node, yaml.MappingNode):
            first_check = id(node) not in checked
            checked.add(id(node))
            stack.extend(_mapping_items(node, where, lines, problems if first_check else None))
    if problems:
        raise ConfigError("\n".join(f"config error in {path}, {problem}" for problem in problems))
    return lines


def _mapping_items(
    node: yaml.MappingNode,
    where: KeyPath,
    lines: dict[KeyPath, int],
    problems: list[str] | None,
) -> list[tuple[yaml.Node, KeyPath]]:
    """The children of a mapping to walk; notes its keys' lines (the keys written here win over
    merged ones, as in YAML) and, with ``problems``, its duplicate keys."""
    children: list[tuple[yaml.Node, KeyPath]] = []
    seen: dict[tuple[str, str], int] = {}
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:  # `<<: *defaults`: its keys belong to this mapping
            children.append((value_node, where))
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            children.append((key_node, where))  # counted; PyYAML refuses it when constructing
            children.append((value_node, where))
            continue
        key, line = key_node.value, key_node.start_mark.line + 1
        first = seen.get((key_node.tag, key))
        if first is None:
            seen[(key_node.tag, key)] = line
        elif problems is not None:
            problems.append(_duplicate(where, key, first, line, value_node))
        lines.setdefault((*where, key), line)
        children.append((value_node, (*where, key)))
    return children


def _duplicate(where: KeyPath, key: str, first: int, again: int, value: yaml.Node) -> str:
    lines = f"line {again}" if first == again else f"lines {first} and {again}"
    if isinstance(value, yaml.MappingNode):
        effect, fix = "the second section would replace the whole first one", "merge them into one"
    else:
        effect, fix = "YAML would silently keep only the last value", "keep one"
    return (
        f"line {again}: at '{dotted((*where, key))}': given twice, on {lines}; {effect}, so "
        f"syncd refuses the file: {fix}"
    )


def _yaml_error(path: Path, text: str, exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return (
            f"config error in {path}, line {line}: YAML does not allow the non-printable "
            f"character #x{exc.character:02x} there; remove it"
        )
    mark = getattr(exc, "problem_mark", None)
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or "the file cannot be parsed"
    context = getattr(exc, "context", None)
    if context and problem.startswith("but "):  # "expected a single document ..., but found ..."
        problem = f"{context}, {problem}"
    if "'\\t'" in problem:
        problem += " (YAML indents with spaces, never tabs)"
    return f"config error in {path}{where}: YAML syntax: {problem}"
