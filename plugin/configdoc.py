"""The configuration reference, generated: `docs/configuration.md` from the schema in
`plugin/config.py` and the environment variables `plugin.yaml` maps onto it.

    python -m plugin.configdoc            # (re)writes docs/configuration.md
    python -m plugin.configdoc --check    # exit status 1 when the file is out of date

Every key path, its type, default, constraints and description come from the pydantic models
(`Field(description=...)`, class docstrings); a field without a description is an error, so the
reference cannot silently fall behind the schema.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .config import _VAR, Config

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "configuration.md"
PLUGIN_YAML = ROOT / "plugin.yaml"

_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")

#: Placeholders in generic key paths: a mapping's key, a list's item.
NAME = "<name>"
ITEM = "[]"


@dataclass(frozen=True)
class EnvRef:
    """One `${VAR}` or `${VAR:-default}` in plugin.yaml."""

    var: str
    #: None: no default (the variable is required).
    default: str | None
    #: Concrete path of the shipped entry, when the key's generic path has placeholders.
    where: str
    #: The concrete key path it sets.
    path: str


@dataclass
class Section:
    """One model at one (generic) key path: a heading and a table of its fields."""

    path: str
    model: type[BaseModel]
    intro: str
    rows: list[list[str]] = field(default_factory=list)


class UndocumentedField(Exception):
    """A field of the schema has no description."""


# --- walking the types --------------------------------------------------------------------------
def _strip(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _union(tp: Any) -> tuple[Any, ...] | None:
    return get_args(tp) if get_origin(tp) in (Union, types.UnionType) else None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _models_in(tp: Any) -> list[type[BaseModel]]:
    """The models a field holds directly, in a list, in a mapping, or as a tagged union."""
    tp = _strip(tp)
    if _is_model(tp):
        return [tp]
    if get_origin(tp) in (list, dict):
        return _models_in(get_args(tp)[-1])
    members = _union(tp)
    if members and all(_is_model(_strip(m)) for m in members):
        return [_strip(m) for m in members]
    return []


def _child_path(path: str, tp: Any) -> str:
    tp = _strip(tp)
    if get_origin(tp) is list:
        return f"{path}{ITEM}"
    if get_origin(tp) is dict:
        return f"{path}.{NAME}"
    return path


def _type_name(tp: Any) -> str:
    tp = _strip(tp)
    if tp is str:
        return "text"
    if tp is bool:
        return "true/false"
    if tp is int:
        return "integer"
    if tp is float:
        return "number"
    if tp is SecretStr:
        return "text, **secret**"
    if tp is Any:
        return "any"
    if _is_model(tp):
        return "section"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in get_args(tp))
    if get_origin(tp) is list:
        return f"list of {_plural(_type_name(get_args(tp)[0]))}"
    if get_origin(tp) is dict:
        key, value = get_args(tp)
        key_name = "name" if _strip(key) is str else _type_name(key)
        return f"mapping of {key_name} → {_type_name(value)}"
    members = _union(tp)
    if members:
        named = [m for m in members if m is not type(None)]
        if all(_is_model(_strip(m)) for m in named):
            return "section"
        text = " or ".join(_type_name(m) for m in named)
        return f"{text}, or empty" if len(named) < len(members) else text
    return getattr(tp, "__name__", str(tp))


def _plural(name: str) -> str:
    return {"text": "texts", "integer": "integers", "number": "numbers",
            "section": "sections", "text, **secret**": "texts, **secret**"}.get(name, name)


def _constraints(info: FieldInfo, tp: Any) -> list[str]:
    tp = _strip(tp)
    noun = "character" if tp is str else "item"
    out = []
    for m in info.metadata:
        if isinstance(m, at.Gt):
            out.append(f"> {_number(m.gt)}")
        elif isinstance(m, at.Ge):
            out.append(f"≥ {_number(m.ge)}")
        elif isinstance(m, at.Lt):
            out.append(f"< {_number(m.lt)}")
        elif isinstance(m, at.Le):
            out.append(f"≤ {_number(m.le)}")
        elif isinstance(m, at.MinLen):
            out.append(f"at least {_count(m.min_length, noun)}")
        elif isinstance(m, at.MaxLen):
            out.append(f"at most {_count(m.max_length, noun)}")
        elif getattr(m, "pattern", None):
            out.append(f"matches `{m.pattern}`")
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _number(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, SecretStr):
        return "empty" if not value.get_secret_value() else "(set)"
    if value is None:
        return "unset"
    if value == "" or value == [] or value == {}:
        return "empty"
    value = _whole(value)
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return f"`{text}`"


def _whole(value: Any) -> Any:
    """Whole floats as integers (`30`, not `30.0`), as a person writes them in YAML."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    return value


def _duration_hint(info: FieldInfo, default: str) -> str:
    """`604800` → `604800` (7 days), for fields measured in seconds."""
    if "second" not in (info.description or "").lower() or not default.strip("`").isdigit():
        return default
    seconds = int(default.strip("`"))
    for unit, size in (("day", 86400), ("hour", 3600)):
        if seconds >= size and seconds % size == 0:
            return f"{default} ({_count(seconds // size, unit)})"
    return default


def _cell(text: str) -> str:
    """One table cell: one line, `|` escaped, and a `<` that could open a tag outside code spans
    written as an entity (a renderer would take `<public URL>` for a tag and drop it)."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = _TAG_START.sub("&lt;", parts[i])
    return "`".join(parts)


def _doc(model: type[BaseModel]) -> str:
    raw = model.__doc__
    if not raw or model.__doc__ is BaseModel.__doc__:
        return ""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(raw).split("\n\n"))


def _kind(model: type[BaseModel]) -> str:
    """The tag of a tagged-union member (`kind: glpi`), or ""."""
    tag = model.model_fields.get("kind")
    if tag is not None and get_origin(tag.annotation) is Literal:
        return str(get_args(tag.annotation)[0])
    return ""


# --- plugin.yaml's environment variables --------------------------------------------------------
def env_refs(plugin_yaml: str) -> dict[tuple[type[BaseModel], str], list[EnvRef]]:
    """Where plugin.yaml reads each environment variable, by (model, field)."""
    raw = yaml.safe_load(plugin_yaml)
    out: dict[tuple[type[BaseModel], str], list[EnvRef]] = {}
    if isinstance(raw, dict):
        _collect(raw, Config, "", "", out)
    return out


def _collect(node: Any, model: type[BaseModel], path: str, where: str,
             out: dict[tuple[type[BaseModel], str], list[EnvRef]]) -> None:
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        info = model.model_fields.get(str(key))
        if info is None:
            continue
        here = f"{path}.{key}" if path else str(key)
        _collect_value(value, info.annotation, here, where, (model, str(key)), out)


def _collect_value(value: Any, tp: Any, path: str, where: str,
                   owner: tuple[type[BaseModel], str],
                   out: dict[tuple[type[BaseModel], str], list[EnvRef]]) -> None:
    tp = _strip(tp)
    if isinstance(value, str):
        for m in _VAR.finditer(value):
            out.setdefault(owner, []).append(EnvRef(m.group(1), m.group(2), where, path))
        return
    models = _models_in(tp)
    if get_origin(tp) is list and isinstance(value, list):
        for i, item in enumerate(value):
            item_path = f"{path}[{i}]"
            if models:
                _collect_model(item, models, item_path, item_path, out)
            else:
                _collect_value(item, get_args(tp)[0], item_path, where, owner, out)
    elif get_origin(tp) is dict and isinstance(value, dict):
        for key, item in value.items():
            item_path = f"{path}.{key}"
            if models:
                _collect_model(item, models, item_path, item_path, out)
            else:
                _collect_value(item, get_args(tp)[1], item_path, where, owner, out)
    elif models:
        _collect_model(value, models, path, where, out)


def _collect_model(node: Any, models: list[type[BaseModel]], path: str, where: str,
                   out: dict[tuple[type[BaseModel], str], list[EnvRef]]) -> None:
    if len(models) > 1 and isinstance(node, dict):
        models = [m for m in models if _kind(m) == node.get("kind")]
    if len(models) == 1:
        _collect(node, models[0], path, where, out)


# --- the document -------------------------------------------------------------------------------
def sections(env: dict[tuple[type[BaseModel], str], list[EnvRef]]) -> list[Section]:
    """Every model of the schema at its generic key path, depth first."""
    out: list[Section] = []
    _walk(Config, "", "", env, out)
    return out


def _intro(model: type[BaseModel], described: str) -> str:
    """The field's description says what the section is for here; the model's docstring what
    it is everywhere. Both, unless one repeats the other."""
    doc = _doc(model)
    if not described or doc.startswith(described.rstrip(".")):
        return doc
    if not doc or described.startswith(doc.rstrip(".")):
        return described
    return f"{described}\n\n{doc}"


def _fields(model: type[BaseModel]) -> list[tuple[str, FieldInfo]]:
    """The model's own fields first, then those it inherits."""
    own = set(vars(model).get("__annotations__", {}))
    items = list(model.model_fields.items())
    return [i for i in items if i[0] in own] + [i for i in items if i[0] not in own]


def _walk(model: type[BaseModel], path: str, described: str,
          env: dict[tuple[type[BaseModel], str], list[EnvRef]], out: list[Section]) -> None:
    if any(s.path == path and s.model is model for s in out):
        return  # a model reached twice at one path (a field every union member inherits)
    section = Section(path, model, _intro(model, described))
    out.append(section)
    children: list[tuple[type[BaseModel], str, str]] = []
    for name, info in _fields(model):
        here = f"{path}.{name}" if path else name
        if not info.description:
            raise UndocumentedField(f"{model.__name__}.{name} ({here}) has no description: "
                                    "give it Field(description=...)")
        default = _duration_hint(info, _default(info))
        limits = _constraints(info, info.annotation)
        kind = _type_name(info.annotation) + "".join(f", {c}" for c in limits)
        section.rows.append([f"`{name}`", kind, default, _env_cell(env.get((model, name), [])),
                             info.description])
        for child in _models_in(info.annotation):
            children.append((child, _child_path(here, info.annotation), info.description))
    for child, child_path, child_described in children:
        _walk(child, child_path, child_described, env, out)


def _env_cell(refs: list[EnvRef]) -> str:
    parts = []
    for ref in refs:
        text = f"`{ref.var}`"
        if ref.where:
            text += f" (`{ref.where}`)"
        if text not in parts:
            parts.append(text)
    return ", ".join(parts)


def _heading(section: Section) -> str:
    kind = _kind(section.model)
    title = f"`{section.path}`" if section.path else "plugin.yaml"
    return f"{title} — `kind: {kind}`" if kind and section.path.endswith(NAME) else title


def _is_secret(tp: Any) -> bool:
    tp = _strip(tp)
    if tp is SecretStr:
        return True
    return get_origin(tp) in (list, dict) and _strip(get_args(tp)[-1]) is SecretStr


def _variables(config_text: str,
               env: dict[tuple[type[BaseModel], str], list[EnvRef]]) -> list[list[str]]:
    raw = yaml.safe_load(config_text)
    schema = (raw.get("manifest") or {}).get("settings_schema") or {} \
        if isinstance(raw, dict) else {}
    listed = {str(e.get("key")): e for e in schema.get("settings") or [] if isinstance(e, dict)}
    rows: dict[str, list[str]] = {}
    for (model, name), refs in env.items():
        info = model.model_fields[name]
        for ref in refs:
            entry = listed.get(ref.var, {})
            secret = _is_secret(info.annotation) or bool(entry.get("secret"))
            if ref.default is None:
                default = "required"
            else:
                default = f"`{ref.default}`" if ref.default else "empty"
            row = rows.setdefault(ref.var, [f"`{ref.var}`", "", default,
                                            "yes" if secret else "",
                                            str(entry.get("help_text") or
                                                info.description or "")])
            keys = [k for k in row[1].split(", ") if k]
            if f"`{ref.path}`" not in keys:
                row[1] = ", ".join([*keys, f"`{ref.path}`"])
    return [rows[k] for k in sorted(rows)]


HEADER = """\
# Configuration reference

<!-- Generated by `python -m plugin.configdoc` (`make docs`) from plugin/config.py and
plugin.yaml: do not edit by hand. -->

Switchboard reads one file, `plugin.yaml` (in the working directory, or the file named by
`SWITCHBOARD_CONFIG` or `switchboard <command> --config FILE`). It has two parts: `manifest`,
what Mattermost and operators read about the bot, and `settings`, how the bot runs. Any string
in it may read the environment: `${VAR}` (the variable must be set) or `${VAR:-default}` (the
default when it is unset or empty). A lone `${VAR}` that holds a number or `true`/`false` is
read as one.

`switchboard check` validates the file without connecting; every error names the key path,
e.g. `settings.stream.ping_interval: Input should be greater than 0`. Unknown keys are errors.

In the tables, **Default** is what applies when plugin.yaml leaves the key out; the shipped
plugin.yaml sets a few keys itself (one `112` trigger, the `glpi` and `redmine` trackers, the
alert sources) and reads the **Environment** variables shown. `<name>` stands for a name you
choose (a key of that mapping), `[]` for each item of a list. Durations are in seconds unless
the description says otherwise. Secrets are never logged: the log masks their values.
"""


#: Environment variables the commands read directly.
OTHER_VARIABLES = [
    ("`SWITCHBOARD_CONFIG`", "every command", "The configuration file when `--config` is not "
     "given (default `./plugin.yaml`)."),
    ("`SWITCHBOARD_ALERTS_TOKEN`", "`switchboard sendevt`", "The alert listener's token "
     "(`ALERTS_TOKEN` also works); secret."),
    ("`SWITCHBOARD_CONSOLE_TOKEN`", "`switchboard console`", "The sandbox user to chat as "
     "(default alice's token); the sandbox only."),
]


def render(config_text: str) -> str:
    """The whole reference, from the schema and the text of plugin.yaml."""
    env = env_refs(config_text)
    out = [HEADER, "## Environment variables\n",
           "The variables the shipped plugin.yaml reads, and the keys they set.\n",
           "| Variable | Sets | Default | Secret | Meaning |", "|---|---|---|---|---|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in _variables(config_text, env)]
    out += ["", "Read by the programs themselves, not through plugin.yaml:", "",
            "| Variable | Read by | Meaning |", "|---|---|---|"]
    out += ["| " + " | ".join(row) + " |" for row in OTHER_VARIABLES]
    for section in sections(env):
        out += ["", f"## {_heading(section)}", ""]
        if section.intro:
            out += [section.intro, ""]
        out += ["| Key | Type | Default | Environment | Description |", "|---|---|---|---|---|"]
        out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in section.rows]
    return "\n".join(out) + "\n"


def undocumented() -> list[str]:
    """Fields of the schema without a description (empty when all have one)."""
    problems: list[str] = []
    seen: set[type[BaseModel]] = set()

    def visit(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            if not info.description:
                problems.append(f"{model.__name__}.{name}")
            for child in _models_in(info.annotation):
                visit(child)

    visit(Config)
    return problems


def iter_key_paths() -> Iterator[str]:
    """Every generic key path of the schema (`settings.trackers.<name>.url`, ...)."""
    for section in sections({}):
        for row in section.rows:
            name = row[0].strip("`")
            yield f"{section.path}.{name}" if section.path else name


def main(argv: list[str] | None = None) -> int:
    """Write the reference, or with --check say whether it is out of date."""
    p = argparse.ArgumentParser(prog="python -m plugin.configdoc",
                                description="Generate the configuration reference.")
    p.add_argument("--check", action="store_true",
                   help="do not write; exit 1 when the file is out of date")
    p.add_argument("--config", type=Path, default=PLUGIN_YAML, help="plugin.yaml to read")
    p.add_argument("--output", type=Path, default=OUTPUT, help="the Markdown file")
    args = p.parse_args(argv)
    try:
        text = render(args.config.read_text(encoding="utf-8"))
    except UndocumentedField as exc:
        print(f"configdoc: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"configdoc: cannot read {args.config}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        current = args.output.read_text(encoding="utf-8")
    except OSError:
        current = None
    if args.check:
        if current != text:
            print(f"configdoc: {args.output} is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
