"""A small renderer for the Go-template subset the Helm chart uses (there is no helm binary here).

It implements what ``helm template`` does for ``helm/leadgate`` and nothing more, strictly:
a missing map key, an unknown function or a construct outside the subset is an error (like
``helm lint --strict``), so a typo in a template fails the tests instead of rendering empty.

Subset: text with ``{{- ... -}}`` trim markers and ``{{/* */}}`` comments; ``if / else if /
else``, ``range`` (maps in sorted key order, like Go), ``define`` / ``include``; variables
(``$``, ``$x := ...``); pipelines; field chains on maps, on ``.Files`` and on ``.Files.Glob``
results; the Sprig/Helm functions listed in ``FUNCTIONS``. Values are merged the way Helm
merges ``-f`` files (maps deep, anything else replaced).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class TemplateError(Exception):
    """A template outside the subset, a missing key, a ``required``/``fail`` message."""


# --- values ------------------------------------------------------------------------------


def merge_values(base: Any, overlay: Any) -> Any:
    """Helm's coalescing of ``-f`` files: maps merge key by key, a ``null`` deletes a key."""
    if not (isinstance(base, dict) and isinstance(overlay, dict)):
        return overlay
    merged = dict(base)
    for key, value in overlay.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_values(base.get(key), value)
    return merged


# --- YAML the way Helm's toYaml writes it ------------------------------------------------


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str_representer)


def helm_numbers(value: Any, number: type = float) -> Any:
    """Helm reads values through JSON: every number becomes a float64 (``number=float``);
    its toYaml writes integral ones back without a fraction (``number=int``)."""
    if isinstance(value, dict):
        return {k: helm_numbers(v, number) for k, v in value.items()}
    if isinstance(value, list):
        return [helm_numbers(v, number) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return number(value) if number is float or float(value).is_integer() else value
    return value


def to_yaml(value: Any) -> str:
    value = helm_numbers(value, int)
    text = yaml.dump(value, Dumper=_Dumper, default_flow_style=False, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("...").removesuffix("\n")


# --- chart files -------------------------------------------------------------------------


class Glob(dict[str, str]):
    """``.Files.Glob`` result: path -> content, ranged over in path order."""

    def AsConfig(self) -> str:
        return to_yaml({posixpath.basename(k): v for k, v in self.items()})


@dataclass(frozen=True)
class Files:
    root: Path

    def Get(self, path: str) -> str:
        file = self.root / path
        return file.read_text(encoding="utf-8") if file.is_file() else ""

    def Glob(self, pattern: str) -> Glob:
        found = Glob()
        for file in sorted(self.root.rglob("*")):
            relative = file.relative_to(self.root).as_posix()
            if file.is_file() and fnmatch.fnmatchcase(relative, pattern):
                found[relative] = file.read_text(encoding="utf-8")
        return found


# --- functions ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    """How Go's template prints a value (Helm turns ``<no value>`` into "")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        return str(value)
    raise TemplateError(f"printing a {type(value).__name__} (use toYaml)")


def truthy(value: Any) -> bool:
    """Go template truth: false, 0, nil and empty strings, maps and lists are false."""
    return bool(value)


def _indent(width: int, text: str) -> str:
    pad = " " * width
    return pad + text.replace("\n", "\n" + pad)


def _printf(form: str, *args: Any) -> str:
    # Go verbs used by the chart: %s and %d; both print like Python's %s here.
    return re.sub(r"%[sdv]", "%s", form) % tuple(_text(a) for a in args)


def _default(fallback: Any, *given: Any) -> Any:
    return given[0] if given and truthy(given[0]) else fallback


def _required(message: str, value: Any) -> Any:
    if value is None or value == "":
        raise TemplateError(message)
    return value


def _fail(message: str) -> Any:
    raise TemplateError(message)


def _set(target: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    target[key] = value
    return target


def _dict(*pairs: Any) -> dict[str, Any]:
    if len(pairs) % 2:
        raise TemplateError("dict needs key/value pairs")
    return {str(pairs[i]): pairs[i + 1] for i in range(0, len(pairs), 2)}


def _gt(a: Any, b: Any) -> bool:
    # Go's comparison refuses to mix integers and floats; Helm's values are all float64, so
    # the renderer does the same with what YAML reads as int vs float here.
    if isinstance(a, float) != isinstance(b, float):
        raise TemplateError(f"incompatible types for comparison: {a!r} > {b!r}")
    return bool(a > b)


def _add(*numbers: Any) -> int:
    return sum(int(n) for n in numbers)  # sprig's add works on int64


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "toYaml": to_yaml,
    "indent": _indent,
    "nindent": lambda width, text: "\n" + _indent(width, text),
    "quote": lambda *vs: " ".join(json.dumps(_text(v), ensure_ascii=False) for v in vs),
    "default": _default,
    "printf": _printf,
    "print": lambda *vs: "".join(_text(v) for v in vs),
    "trunc": lambda n, s: s[:n],
    "trimSuffix": lambda suffix, s: s.removesuffix(suffix),
    "replace": lambda old, new, s: s.replace(old, new),
    "sha256sum": lambda s: hashlib.sha256(s.encode("utf-8")).hexdigest(),
    "base": posixpath.basename,
    "dict": _dict,
    "set": _set,
    "add": _add,
    "not": lambda v: not truthy(v),
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": _gt,
    "int": int,
    "empty": lambda v: not truthy(v),
    "required": _required,
    "fail": _fail,
}

# --- lexing and parsing ------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*") | (?P<num>-?\d+(?:\.\d+)?) |
        (?P<op>:=|=|\||\(|\)|,) |
        (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*) |
        (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.) |
        (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


@dataclass
class Node:
    kind: str  # text | action | if | range | define
    text: str = ""
    pipe: list[Any] = field(default_factory=list)
    branches: list[tuple[list[Any], list[Node]]] = field(default_factory=list)
    body: list[Node] = field(default_factory=list)
    otherwise: list[Node] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # declared variables


def _tokens(source: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    source = source.rstrip()
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None or match.end() == pos:
            raise TemplateError(f"cannot read {source[pos:]!r}")
        kind = match.lastgroup or ""
        if kind == "field" and out and out[-1][1] == ")" and match.group(0)[0] == ".":
            kind = "chain"  # `(pipeline).Field`: no space between
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _split_actions(source: str) -> list[tuple[str, str]]:
    """``[("text", ...), ("action", ...)]`` with trim markers applied, comments dropped."""
    parts: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for match in _ACTION.finditer(source):
        text = source[pos : match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        parts.append(("text", text))
        body = match.group(2).strip()
        if not (body.startswith("/*") and body.endswith("*/")):
            parts.append(("action", body))
        trim_next = bool(match.group(3))
        pos = match.end()
    tail = source[pos:]
    parts.append(("text", tail.lstrip() if trim_next else tail))
    return [p for p in parts if p != ("text", "")]


class _Parser:
    def __init__(self, source: str, defines: dict[str, list[Node]]) -> None:
        self.parts = _split_actions(source)
        self.pos = 0
        self.defines = defines

    def parse(self, closers: tuple[str, ...] = ()) -> tuple[list[Node], str]:
        nodes: list[Node] = []
        while self.pos < len(self.parts):
            kind, body = self.parts[self.pos]
            self.pos += 1
            if kind == "text":
                nodes.append(Node("text", text=body))
                continue
            word = body.split(None, 1)[0] if body else ""
            rest = body[len(word) :].strip()
            if word in closers or (word == "else" and "else" in closers):
                return nodes, body
            if word == "if":
                nodes.append(self._if(rest))
            elif word == "range":
                nodes.append(self._range(rest))
            elif word == "define":
                name = json.loads(rest)
                self.defines[name], _ = self.parse(("end",))
            elif word in ("with", "template", "block", "break", "continue", "end", "else"):
                raise TemplateError(f"{{{{ {body} }}}} is outside the renderer's subset")
            else:
                nodes.append(Node("action", pipe=_tokens(body)))
        if closers:
            raise TemplateError(f"missing {{{{ end }}}} (expected one of {closers})")
        return nodes, ""

    def _if(self, condition: str) -> Node:
        node = Node("if")
        while True:
            body, closer = self.parse(("end", "else"))
            node.branches.append((_tokens(condition), body))
            if closer == "end":
                return node
            if closer.startswith("else if "):
                condition = closer[len("else if ") :]
                continue
            node.otherwise, _ = self.parse(("end",))
            return node

    def _range(self, header: str) -> Node:
        names: list[str] = []
        tokens = _tokens(header)
        if ":=" in [t[1] for t in tokens]:
            split = [t[1] for t in tokens].index(":=")
            names = [t[1] for t in tokens[:split] if t[0] == "var"]
            tokens = tokens[split + 1 :]
        body, closer = self.parse(("end", "else"))
        node = Node("range", pipe=tokens, body=body, names=names)
        if closer != "end":
            node.otherwise, _ = self.parse(("end",))
        return node


# --- evaluation --------------------------------------------------------------------------


class Template:
    """Every file of a chart's ``templates/`` parsed as one set, as Helm does."""

    def __init__(self, chart_dir: Path) -> None:
        self.chart_dir = chart_dir
        chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text(encoding="utf-8"))
        self.chart = {"Name": chart["name"], "Version": chart["version"]}
        self.chart["AppVersion"] = chart.get("appVersion", "")
        self.defines: dict[str, list[Node]] = {}
        self.files: dict[str, list[Node]] = {}
        for path in sorted((chart_dir / "templates").iterdir()):
            name = f"{chart['name']}/templates/{path.name}"
            parser = _Parser(path.read_text(encoding="utf-8"), self.defines)
            self.files[name], _ = parser.parse()
            self.defines[name] = self.files[name]

    def render(self, values: Mapping[str, Any], release: str = "lg") -> dict[str, str]:
        """``{template file name: rendered text}`` for every file not starting with ``_``."""
        base = f"{self.chart['Name']}/templates"
        out: dict[str, str] = {}
        for name, nodes in self.files.items():
            if posixpath.basename(name).startswith("_"):
                continue
            root = {
                "Values": helm_numbers(values),
                "Release": {"Name": release, "Namespace": "default", "Service": "Helm"},
                "Chart": self.chart,
                "Files": Files(self.chart_dir),
                "Template": {"Name": name, "BasePath": base},
            }
            out[name] = self._run(nodes, root, {"$": root})
        return out

    def _run(self, nodes: list[Node], dot: Any, scope: dict[str, Any]) -> str:
        out: list[str] = []
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                value = self._pipe(node.pipe, dot, scope)
                if value is not _DECLARED:
                    out.append(_text(value))
            elif node.kind == "if":
                for condition, body in node.branches:
                    if truthy(self._pipe(condition, dot, scope)):
                        out.append(self._run(body, dot, dict(scope)))
                        break
                else:
                    out.append(self._run(node.otherwise, dot, dict(scope)))
            elif node.kind == "range":
                out.append(self._range(node, dot, scope))
        return "".join(out)

    def _range(self, node: Node, dot: Any, scope: dict[str, Any]) -> str:
        subject = self._pipe(node.pipe, dot, scope)
        if isinstance(subject, dict):
            items = [(k, subject[k]) for k in sorted(subject)]
        elif isinstance(subject, list):
            items = list(enumerate(subject))
        elif subject is None:
            items = []
        else:
            raise TemplateError(f"range over a {type(subject).__name__}")
        if not items:
            return self._run(node.otherwise, dot, dict(scope))
        out = []
        for key, value in items:
            inner = dict(scope)
            if len(node.names) == 1:
                inner[node.names[0]] = value
            elif len(node.names) == 2:
                inner[node.names[0]], inner[node.names[1]] = key, value
            out.append(self._run(node.body, value, inner))
        return "".join(out)

    def _pipe(self, tokens: list[tuple[str, str]], dot: Any, scope: dict[str, Any]) -> Any:
        declare: str | None = None
        if len(tokens) > 2 and tokens[1][1] == ":=" and tokens[0][0] == "var":
            declare, tokens = tokens[0][1], tokens[2:]
        commands: list[list[tuple[str, str]]] = [[]]
        depth = 0
        for token in tokens:
            if token[1] == "|" and depth == 0:
                commands.append([])
                continue
            depth += {"(": 1, ")": -1}.get(token[1], 0) if token[0] == "op" else 0
            commands[-1].append(token)
        value: Any = _NOTHING
        for command in commands:
            value = self._command(command, dot, scope, value)
        if declare is not None:
            scope[declare] = value
            return _DECLARED
        return value

    def _command(
        self, tokens: list[tuple[str, str]], dot: Any, scope: dict[str, Any], piped: Any
    ) -> Any:
        args = self._operands(tokens, dot, scope)
        head_kind, head = tokens[0]
        if head in ("and", "or") and piped is _NOTHING:  # Go evaluates these lazily
            value: Any = None
            for arg in args[1:]:
                value = self._value(arg, dot, scope)
                if truthy(value) != (head == "and"):
                    return value
            return value
        if head_kind == "ident" and head not in ("true", "false", "nil"):
            values = [self._value(a, dot, scope) for a in args[1:]]
            if piped is not _NOTHING:
                values.append(piped)
            if head == "include":
                name, context = values
                return self._run(self._define(name), context, {"$": context})
            if head in ("and", "or"):
                return _and_or(head, values)
            if head not in FUNCTIONS:
                raise TemplateError(f"function {head!r} is outside the renderer's subset")
            return FUNCTIONS[head](*values)
        target = self._value(args[0], dot, scope)
        rest = [self._value(a, dot, scope) for a in args[1:]]
        if piped is not _NOTHING:
            rest.append(piped)
        if callable(target):
            return target(*rest)
        if rest:
            raise TemplateError(f"{head!r} is not a function")
        return target

    def _define(self, name: str) -> list[Node]:
        if name not in self.defines:
            raise TemplateError(f"no template named {name!r}")
        return self.defines[name]

    def _operands(
        self, tokens: list[tuple[str, str]], dot: Any, scope: dict[str, Any]
    ) -> list[Any]:
        """Group tokens into operands; a parenthesised pipeline becomes one ("pipe", tokens)."""
        operands: list[Any] = []
        i = 0
        while i < len(tokens):
            kind, text = tokens[i]
            if text == "(" and kind == "op":
                depth, j = 1, i + 1
                while depth:
                    depth += {"(": 1, ")": -1}.get(tokens[j][1], 0) if tokens[j][0] == "op" else 0
                    j += 1
                inner = tokens[i + 1 : j - 1]
                follow = ""
                if j < len(tokens) and tokens[j][0] == "chain":
                    follow, j = tokens[j][1], j + 1
                operands.append(("pipe", inner, follow))
                i = j
            else:
                operands.append((kind, text))
                i += 1
        return operands

    def _value(self, operand: Any, dot: Any, scope: dict[str, Any]) -> Any:
        kind = operand[0]
        if kind == "pipe":
            value = self._pipe(operand[1], dot, scope)
            return _walk(value, operand[2]) if operand[2] else value
        text = operand[1]
        if kind == "str":
            return json.loads(text)
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "ident":
            return {"true": True, "false": False, "nil": None}[text]
        if kind == "field":
            return dot if text == "." else _walk(dot, text)
        if kind == "var":
            name, _, path = text.partition(".")
            if name not in scope:
                raise TemplateError(f"undefined variable {name}")
            return _walk(scope[name], "." + path) if path else scope[name]
        raise TemplateError(f"unexpected {text!r}")


_NOTHING = object()
_DECLARED = object()


def _and_or(which: str, values: list[Any]) -> Any:
    for value in values:
        if truthy(value) != (which == "and"):
            return value
    return values[-1]


def _walk(value: Any, chain: str) -> Any:
    for name in chain.strip(".").split("."):
        if isinstance(value, Mapping) and not (isinstance(value, Glob) and name == "AsConfig"):
            if name not in value:
                raise TemplateError(f"map has no key {name!r} (in {chain})")
            value = value[name]
        elif value is not None and hasattr(value, name):
            value = getattr(value, name)
        else:
            raise TemplateError(f"cannot evaluate {name!r} of {type(value).__name__} in {chain}")
    return value


def documents(rendered: Mapping[str, str]) -> list[dict[str, Any]]:
    """The manifests of a render, parsed, empty documents dropped (as Helm does)."""
    out: list[dict[str, Any]] = []
    for name, text in rendered.items():
        for doc in re.split(r"(?m)^---\s*$", text):
            try:
                parsed = yaml.safe_load(doc)
            except yaml.YAMLError as error:
                raise TemplateError(f"{name} does not render to YAML: {error}\n{doc}") from None
            if parsed is not None:
                out.append(parsed)
    return out
