"""The google provider's schema, read from @cdktf/provider-google's TypeScript, and a check against it.

`terraform validate` needs the provider binary, which cannot be fetched here. cdktf's prebuilt
bindings are generated from that provider's schema and are on npm (scripts/install_tools.sh
unpacks their .d.ts into .tools/provider-google). In lib/<resource>/, the resource's
`...Config extends cdktf.TerraformMetaArguments` interface has one property per argument, each
with a JSDoc link ending `#<terraform_name> Class#<terraform_name>}`: the link, not the camelCase
property, gives the Terraform name. A property typed by another interface of the same resource is
a nested block (cdktf writes "<name> block" above exactly those), whose interface holds its own
arguments, recursively. Computed-only attributes are not in these interfaces: setting one is an
error to Terraform as well.

A schema is plain JSON: {"attributes": [names], "blocks": {name: schema}}.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import hcl2
from hcl2.utils import SerializationOptions

Kind = Literal["resource", "data"]
Schema = dict[str, Any]

# Terraform's own arguments, allowed on every resource and data source (their bodies are not checked).
META_ARGUMENTS = frozenset({"count", "for_each", "depends_on", "lifecycle", "provider"})
# The arguments of a `dynamic "label" { ... }` block besides its `content`.
DYNAMIC_ARGUMENTS = frozenset({"for_each", "iterator", "labels"})

_INTERFACE = re.compile(r"^export interface (\w+)(?: extends ([\w.]+))? \{$(.*?)^\}", re.M | re.S)
_PROPERTY = re.compile(r"/\*\*(?P<doc>(?:(?!\*/).)*)\*/\s*readonly (?P<camel>\w+)\??:\s*(?P<type>[\w.]*)", re.S)
_LINK = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/hashicorp/google/[^/]+/docs/"
    r"(?:resources|data-sources)/\w+#(?P<name>\w+) \w+#(?P=name)\}"
)
_TYPE = re.compile(r'static readonly tfResourceType = "(\w+)"')
_BASE = {"resource": "cdktf.TerraformResource", "data": "cdktf.TerraformDataSource"}
# explicit_blocks marks each block `__is_block__`, telling `name { ... }` from `name = { ... }`.
_HCL = SerializationOptions(with_comments=False, explicit_blocks=True, strip_string_quotes=True)


def parse_schema(declarations: str) -> Schema:
    """The schema of the one resource (or data source) whose .d.ts text this is."""
    interfaces = {m[1]: (m[2], m[3]) for m in _INTERFACE.finditer(declarations)}
    configs = [name for name, (base, _) in interfaces.items() if base == "cdktf.TerraformMetaArguments"]
    if len(configs) != 1:
        raise ValueError(f"expected one interface extending cdktf.TerraformMetaArguments, found {configs}")
    bodies = {name: body for name, (_, body) in interfaces.items()}
    return _interface_schema(bodies, configs[0], ())


def _interface_schema(bodies: dict[str, str], name: str, outer: tuple[str, ...]) -> Schema:
    if name in outer:
        raise ValueError(f"interface {name} contains itself: {' > '.join(outer)}")
    attributes: list[str] = []
    blocks: dict[str, Schema] = {}
    for prop in _PROPERTY.finditer(bodies[name]):
        link = _LINK.search(prop["doc"])
        if link is None:  # a generator change would otherwise drop arguments silently
            raise ValueError(f"{name}.{prop['camel']} has no Terraform Registry link naming it")
        if prop["type"] in bodies:
            blocks[link["name"]] = _interface_schema(bodies, prop["type"], (*outer, name))
        else:
            attributes.append(link["name"])
    return {"attributes": sorted(attributes), "blocks": blocks}


@dataclass
class SchemaIndex:
    """The package's schemas by kind and type, each parsed on first use (the whole package is 30 MB)."""

    root: Path
    schemas: dict[str, dict[str, Schema | None]] = field(default_factory=lambda: {"resource": {}, "data": {}})

    @property
    def package(self) -> dict[str, Any]:
        return json.loads((self.root / "package.json").read_text())

    @property
    def provider_version(self) -> str:
        """The hashicorp/google release the bindings were generated from (package.json's cdktf.provider)."""
        return str(self.package["cdktf"]["provider"]["version"])

    def schema(self, kind: Kind, type_: str) -> Schema | None:
        """The schema of `type_`, or None when the provider has no such resource (or data source)."""
        if type_ not in self.schemas[kind]:
            folder = self._folder(kind, type_)
            text = "".join(p.read_text() for p in sorted(folder.rglob("*.d.ts"))) if folder else ""
            self.schemas[kind][type_] = parse_schema(text) if folder else None
        return self.schemas[kind][type_]

    def types(self, kind: Kind) -> list[str]:
        """Every type of this kind, from the folder names (for suggestions; nothing is read)."""
        names = [p.name for p in (self.root / "lib").iterdir() if (p / "index.d.ts").is_file()]
        if kind == "data":
            return [n.removeprefix("data-").replace("-", "_") for n in names if n.startswith("data-google-")]
        return ["google_" + n.replace("-", "_") for n in names if not n.startswith("data-") and n != "provider"]

    def _folder(self, kind: Kind, type_: str) -> Path | None:
        """lib/cloud-run-v2-job for the resource google_cloud_run_v2_job, lib/data-google-... for data.

        The name is derived, then confirmed by the class's tfResourceType and base class; only a
        miss (a typo, or a type the generator named otherwise) reads every folder.
        """
        derived = ("data-" + type_ if kind == "data" else type_.removeprefix("google_")).replace("_", "-")
        for folder in [self.root / "lib" / derived, *sorted((self.root / "lib").iterdir())]:
            index = folder / "index.d.ts"
            if index.is_file() and self._declares(index.read_text(), kind, type_):
                return folder
        return None

    @staticmethod
    def _declares(text: str, kind: Kind, type_: str) -> bool:
        found = _TYPE.search(text)
        return bool(found and found[1] == type_ and f"extends {_BASE[kind]} " in text)


@dataclass(frozen=True)
class Block:
    """One resource or data block of a .tf file, parsed with its blocks marked."""

    file: str
    kind: Kind
    type: str
    name: str
    body: dict[str, Any]

    @property
    def address(self) -> str:
        return f"{'data.' if self.kind == 'data' else ''}{self.type}.{self.name}"


def google_blocks(paths: list[Path]) -> list[Block]:
    """The resources and data sources of the google and google-beta providers (types google_*)."""
    found = []
    for path in paths:
        parsed = hcl2.loads(path.read_text(), serialization_options=_HCL)
        for kind in ("resource", "data"):
            for entry in parsed.get(kind, []):
                for type_, named in entry.items():
                    if type_.startswith("google_"):
                        found.extend(Block(path.name, kind, type_, name, body) for name, body in named.items())
    return found


@dataclass
class Report:
    """What a check found: each problem a line naming file, address, path and the nearest valid names."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)

    def check(self, block: Block, index: SchemaIndex) -> None:
        schema = index.schema(block.kind, block.type)
        if schema is None:
            what = "data source" if block.kind == "data" else "resource"
            self._problem(
                block,
                "",
                f"hashicorp/google {index.provider_version} has no {what} {block.type}",
                block.type,
                index.types(block.kind),
            )
            return
        self._body(block, block.body, schema, "")

    def _body(self, block: Block, body: dict[str, Any], schema: Schema, path: str) -> None:
        valid = [*schema["attributes"], *schema["blocks"]]
        for key, value in body.items():
            if key.startswith("__") or (not path and key in META_ARGUMENTS):
                continue
            if key == "dynamic":
                for entry in value:
                    for label, dynamic in entry.items():
                        if not label.startswith("__"):
                            self._dynamic(block, label, dynamic, schema, path)
                continue
            self.checked += 1
            where = f"{path}{key}"
            if key in schema["blocks"]:
                if not _is_block(value):
                    self._problem(block, where, f"is a block: write `{key} {{ ... }}`, not `{key} = ...`")
                    continue
                for nested in value:
                    self._body(block, nested, schema["blocks"][key], f"{where}.")
            elif key in schema["attributes"]:
                if _is_block(value):
                    self._problem(block, where, f"is an attribute: write `{key} = ...`, not `{key} {{ ... }}`")
            else:
                self._problem(block, where, "is not an argument of the provider's schema", key, valid)

    def _dynamic(self, block: Block, label: str, dynamic: dict[str, Any], schema: Schema, path: str) -> None:
        self.checked += 1
        where = f'{path}dynamic "{label}"'
        if label not in schema["blocks"]:
            self._problem(block, where, "labels no block of the provider's schema", label, list(schema["blocks"]))
            return
        for key, value in dynamic.items():
            if key == "content" and _is_block(value):
                for content in value:
                    self._body(block, content, schema["blocks"][label], f"{where}.content.")
            elif not key.startswith("__") and key not in DYNAMIC_ARGUMENTS:
                self._problem(
                    block,
                    f"{where}.{key}",
                    "is not an argument of a dynamic block",
                    key,
                    [*DYNAMIC_ARGUMENTS, "content"],
                )

    def _problem(self, block: Block, path: str, message: str, name: str = "", valid: list[str] | None = None) -> None:
        nearest = difflib.get_close_matches(name, valid or [], n=3, cutoff=0.6) if name else []
        hint = f"; nearest: {', '.join(nearest)}" if nearest else ""
        self.problems.append(f"{block.file}: {block.address}: {path or '(type)'} {message}{hint}")


def _is_block(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


if __name__ == "__main__":  # python -m tests.deploy.provider_schema resource google_cloud_run_v2_job
    kind, type_ = sys.argv[1], sys.argv[2]
    root = Path(__file__).resolve().parents[2] / ".tools" / "provider-google"
    print(json.dumps(SchemaIndex(root).schema(kind, type_), indent=1))
