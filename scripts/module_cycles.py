#!/usr/bin/env python3
"""Reports module-level import cycles in the workspace's crates.

A module is a file (`foo.rs`, `foo/mod.rs`) or an inline `mod foo { .. }`.
Module A depends on module B when A's code names a path into B: `use
crate::b::..`, `use super::b::..`, `crate::b::X` or `b::X` for a child
module b, `self::b::..`. A path is charged to the longest module prefix it
names, so `super::Item` in a child is an edge to its parent, and a parent's
`pub use child::Item` is an edge to the child. `#[cfg(test)]` items and
comments are left out: tests may reach anywhere.

Exits 1 and prints each cycle (one strongly connected component of more than
one module) when it finds any. `--self-test` checks the checker on small
crates written to a temporary directory.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CRATES = ["proto", "common", "registry", "executor", "frontend"]

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(src: str) -> str:
    """Blanks comments, string and char literals, keeping line structure."""
    out: list[str] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if src[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', src[i:]) and not re.match(r"[A-Za-z0-9_]", src[i - 1 : i] or " "):
            hashes = re.match(r"r(#*)\"", src[i:]).group(1)
            end = src.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * src.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{..}') or a lifetime ('a).
            m = re.match(r"'(\\.[^']*|[^\\'])'", src[i:])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(src: str, open_at: int) -> int:
    depth = 0
    for j in range(open_at, len(src)):
        if src[j] == "{":
            depth += 1
        elif src[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(src) - 1


CFG_TEST = re.compile(r"#\[cfg\((test|all\(test[^\]]*\)|any\(test[^\]]*\))\)\]")


def drop_cfg_test(src: str) -> str:
    """Removes items behind `#[cfg(test)]` (an inline module, fn or use)."""
    while True:
        m = CFG_TEST.search(src)
        if not m:
            return src
        j = m.end()
        # The item ends at its first top-level `;` or at its brace block.
        depth_paren = 0
        while j < len(src):
            if src[j] in "([":
                depth_paren += 1
            elif src[j] in ")]":
                depth_paren -= 1
            elif src[j] == ";" and depth_paren == 0:
                break
            elif src[j] == "{" and depth_paren == 0:
                j = matching_brace(src, j)
                break
            j += 1
        src = src[: m.start()] + "\n" * src.count("\n", m.start(), j + 1) + src[j + 1 :]


@dataclass
class Module:
    path: tuple[str, ...]  # () is the crate root
    file: Path
    code: str = ""
    children: dict[str, "Module"] = field(default_factory=dict)
    # Directory that holds this module's file children.
    child_dir: Path | None = None
    imports: dict[str, list[str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "::".join(self.path) or "crate"


MOD_DECL = re.compile(rf"(?:pub(?:\([^)]*\))?\s+)?mod\s+({IDENT})\s*([;{{])")


def load_module(mod: Module, src: str, modules: dict[tuple[str, ...], Module]) -> None:
    """Fills `mod.code` with its own code and loads its children."""
    modules[mod.path] = mod
    own: list[str] = []
    pos = 0
    for m in MOD_DECL.finditer(src):
        if m.start() < pos:
            continue
        name, kind = m.group(1), m.group(2)
        child_path = mod.path + (name,)
        if kind == "{":
            close = matching_brace(src, m.end() - 1)
            own.append(src[pos : m.start()])
            child = Module(child_path, mod.file, child_dir=(mod.child_dir or mod.file.parent) / name)
            mod.children[name] = child
            load_module(child, src[m.end() : close], modules)
            pos = close + 1
        else:
            base = mod.child_dir or mod.file.parent
            candidates = [base / f"{name}.rs", base / name / "mod.rs"]
            found = next((c for c in candidates if c.exists()), None)
            if found is None:
                raise SystemExit(f"{mod.file}: cannot find the file of `mod {name};`")
            child_dir = found.parent if found.name == "mod.rs" else found.with_suffix("")
            child = Module(child_path, found, child_dir=child_dir)
            mod.children[name] = child
            load_module(child, read_code(found), modules)
    own.append(src[pos:])
    mod.code = "".join(own)
    mod.imports = imports(mod)


def read_code(path: Path) -> str:
    return drop_cfg_test(strip_comments_and_strings(path.read_text()))


USE_STMT = re.compile(r"\buse\s+([^;]*);", re.S)
INLINE_PATH = re.compile(rf"(?<![A-Za-z0-9_:])((?:{IDENT}\s*::\s*)+{IDENT})")


def expand_use_tree(tree: str, keep_alias: bool = False) -> list[list[str]]:
    """`a::{b, c::{d, e}}` -> [[a, b], [a, c, d], [a, c, e]]."""
    tree = re.sub(rf"\s+as\s+({IDENT})", r"@\1", tree)  # `x as y` -> `x@y`
    tree = re.sub(r"\s+", "", tree)

    def parse(s: str) -> list[list[str]]:
        if "{" not in s:
            return [[p for p in s.split("::") if p]]
        head, rest = s.split("{", 1)
        inner = rest[: rest.rfind("}")]
        prefix = [p for p in head.split("::") if p]
        parts, depth, cur = [], 0, ""
        for ch in inner:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += ch == "{"
            depth -= ch == "}"
            cur += ch
        parts.append(cur)
        out = []
        for part in parts:
            if part:
                out.extend(prefix + sub for sub in parse(part))
            else:
                out.append(prefix)
        return out

    paths = parse(tree)
    if not keep_alias:
        paths = [[seg.partition("@")[0] for seg in path] for path in paths]
        paths = [p[:-1] if p and p[-1] == "self" else p for p in paths]
    return paths


def resolve(mod: Module, segments: list[str], crate_names: set[str]) -> tuple[str, ...] | None:
    """The absolute module path a path starts from, or None if outside."""
    if not segments:
        return None
    first = segments[0]
    if first == "crate":
        return tuple(segments[1:])
    if first in crate_names:  # a binary naming its own library
        return None
    if first == "self":
        return mod.path + tuple(segments[1:])
    if first == "super":
        base = list(mod.path)
        while segments and segments[0] == "super":
            if base:
                base.pop()
            segments = segments[1:]
        return tuple(base) + tuple(segments)
    if first in mod.children:
        return mod.path + tuple(segments)
    return None


def imports(mod: Module) -> dict[str, list[str]]:
    """The names a module's `use` items bring in, each with its path."""
    names = {}
    for m in USE_STMT.finditer(mod.code):
        for segments in expand_use_tree(m.group(1), keep_alias=True):
            if not segments:
                continue
            last, _, alias = segments[-1].partition("@")
            segments = segments[:-1] + ([] if last == "self" else [last])
            name = alias or (segments[-1] if segments else "")
            if name and name not in ("*", "_"):
                names[name] = segments
    return names


def dependencies(
    mod: Module, modules: dict[tuple[str, ...], Module], crate_names: set[str], strict: bool = False
) -> set[tuple[str, ...]]:
    paths: list[list[str]] = []
    code = mod.code
    for m in USE_STMT.finditer(code):
        paths.extend(expand_use_tree(m.group(1)))
    code = USE_STMT.sub(";", code)
    for m in INLINE_PATH.finditer(code):
        paths.append(re.sub(r"\s+", "", m.group(1)).split("::"))
    deps = set()
    for segments in paths:
        target = target_module(mod, segments, modules, crate_names)
        if target is None or target == mod.path:
            continue
        # A module may use what its ancestors define: they are its namespace.
        if not strict and target == mod.path[: len(target)]:
            continue
        deps.add(target)
    return deps


def target_module(mod, segments, modules, crate_names, hops: int = 0):
    """The module a path lands in, following `use` items (re-exports)."""
    target = resolve(mod, segments, crate_names)
    if target is None:
        return None
    # Charge the path to the longest module prefix it names.
    prefix = target
    while prefix and prefix not in modules:
        prefix = prefix[:-1]
    rest = target[len(prefix) :]
    if rest and hops < 8:
        owner = modules[prefix]
        imported = owner.imports.get(rest[0])
        if imported is not None:
            followed = target_module(owner, list(imported) + list(rest[1:]), modules, crate_names, hops + 1)
            if followed is not None:
                return followed
    return prefix


def strongly_connected(graph: dict[tuple[str, ...], set[tuple[str, ...]]]) -> list[list[tuple[str, ...]]]:
    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    out: list = []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def crate_roots(crate_dir: Path) -> list[Path]:
    src = crate_dir / "src"
    roots = [p for p in (src / "lib.rs", src / "main.rs") if p.exists()]
    roots.extend(sorted((src / "bin").glob("*.rs")) if (src / "bin").is_dir() else [])
    return roots


def graph_of(root_file: Path, crate_names: set[str], strict: bool = False) -> tuple[dict, dict]:
    """The modules of one crate root, and which of them each one depends on."""
    modules: dict[tuple[str, ...], Module] = {}
    load_module(Module((), root_file), read_code(root_file), modules)
    graph = {path: dependencies(mod, modules, crate_names, strict) for path, mod in modules.items()}
    return modules, graph


def cycles_in(root_file: Path, crate_names: set[str], strict: bool) -> list[str]:
    """Each cycle of one crate root, as lines of text."""
    modules, graph = graph_of(root_file, crate_names, strict)
    reports = []
    for comp in strongly_connected(graph):
        members = set(comp)
        lines = [f"cycle among {', '.join(modules[p].name for p in sorted(members))}:"]
        for p in comp:
            for q in sorted(graph[p] & members):
                lines.append(f"    {modules[p].name} -> {modules[q].name}")
        reports.append("\n".join(lines))
    return reports


def check(workspace: Path, crates: list[str], strict: bool) -> int:
    crate_names = {"dynamic_mcp_" + c for c in crates} | {c.replace("-", "_") for c in crates}
    found = 0
    for crate in crates:
        for root in crate_roots(workspace / crate):
            for report in cycles_in(root, crate_names, strict):
                found += 1
                print(f"{root.relative_to(workspace)}: {report}")
    if found:
        print(f"{found} module cycle(s): move what both sides need into a module of its own")
        return 1
    print(f"no module cycles in {', '.join(crates)}")
    return 0


def self_test() -> int:
    """Checks the checker: each case is a tiny crate and the cycles expected."""
    cases = {
        "sibling use cycle": (
            {
                "lib.rs": "mod a;\nmod b;\n",
                "a.rs": "use crate::b::B;\npub struct A;\n",
                "b.rs": "use super::a::{self, A};\npub struct B;\n",
            },
            [{"a", "b"}],
        ),
        "inline path cycle through a directory module": (
            {
                "lib.rs": "pub mod net;\n",
                "net/mod.rs": "mod x;\nmod y;\npub fn f() { x::go(); }\n",
                "net/x.rs": "pub fn go() { crate::net::y::run() }\n",
                "net/y.rs": "pub fn run() { let _ = super::x::go; }\n",
            },
            [{"net::x", "net::y"}],
        ),
        "a child may use what its parent defines": (
            {
                "lib.rs": "mod p;\n",
                "p/mod.rs": "mod c;\npub use c::C;\npub struct Shared;\n",
                "p/c.rs": "use super::Shared;\npub struct C(Shared);\n",
            },
            [],
        ),
        "siblings meeting through their parent's re-exports": (
            {
                "lib.rs": "mod p;\n",
                "p/mod.rs": "mod a;\nmod b;\npub use a::A;\nuse b::B as Bee;\n",
                "p/a.rs": "pub struct A(super::Bee);\n",
                "p/b.rs": "pub struct B;\nfn f(_: crate::p::A) {}\n",
            },
            [{"p::a", "p::b"}],
        ),
        "comments, strings and test code are no edges": (
            {
                "lib.rs": "mod a;\nmod b;\n",
                "a.rs": "use crate::b::B;\n",
                "b.rs": (
                    "// use crate::a::A;\nconst S: &str = \"crate::a::A\";\n"
                    "#[cfg(test)]\nmod tests {\n    use crate::a::A;\n}\npub struct B;\n"
                ),
            },
            [],
        ),
        "an inline module is a module": (
            {
                "lib.rs": "mod a;\npub mod labels {\n    pub fn l() { crate::a::f() }\n}\n",
                "a.rs": "pub fn f() { let _ = crate::labels::l; }\n",
            },
            [{"a", "labels"}],
        ),
    }
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (title, (files, expected)) in enumerate(cases.items()):
            src = Path(tmp) / f"case{i}" / "src"
            for rel, text in files.items():
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                (src / rel).write_text(text)
            _, graph = graph_of(src / "lib.rs", set())
            got = [{"::".join(p) for p in comp} for comp in strongly_connected(graph)]
            if sorted(map(sorted, got)) != sorted(map(sorted, expected)):
                failures += 1
                print(f"FAIL {title}: expected {expected}, got {got}")
            else:
                print(f"ok   {title}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("crates", nargs="*", default=CRATES, help="crate directories (default: the whole workspace)")
    parser.add_argument("--self-test", action="store_true", help="check the checker, then the workspace")
    parser.add_argument("--strict", action="store_true", help="count a module's paths to its own ancestors too")
    args = parser.parse_args()
    workspace = Path(__file__).resolve().parent.parent
    if args.self_test and self_test():
        return 1
    return check(workspace, args.crates, args.strict)


if __name__ == "__main__":
    sys.exit(main())
