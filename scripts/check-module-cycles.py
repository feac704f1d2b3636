#!/usr/bin/env python3
"""Checks the data plane's module graph: no import cycle, and the layering rules.

    python3 scripts/check-module-cycles.py        (exit 1 and a message on a violation)

How: every `.rs` file under dataplane/src belongs to one top-level module of the library
(`pipeline/parse.rs` to `pipeline`, `packet.rs` to `packet`; the binary's own modules,
`main.rs`, `runtime.rs` and `run_dpdk.rs`, form a second crate and are checked apart). Comments
are stripped, then every path `crate::X` (including each name of a `use crate::{X, Y::..}`
group) is an edge from the file's top-level module to `X`. Test code counts too: a test that
imports a module is an import. The graph of top-level modules must have no cycle (strongly
connected components, each must be one module without a self edge counting), and:

- `packet` is a leaf: it imports nothing from the crate;
- `wire` and `pipeline` import nothing from `nic` (nor from `worker`, `control`);
- `nic` is pure I/O: it imports nothing from `pipeline`, `worker`, `control`, `snapshot`,
  `publish`;
- `worker` imports nothing from `control` (the control thread implements the workers'
  traits, not the other way round).

scripts/test.sh runs it. See docs/architecture.md for the graph it checks.
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "dataplane", "src")
BIN_FILES = {"main.rs", "runtime.rs", "run_dpdk.rs"}

FORBIDDEN = {
    "packet": None,  # None: nothing from the crate at all
    "wire": {"nic", "worker", "control", "pipeline", "packet"},
    "pipeline": {"nic", "worker", "control"},
    "nic": {"pipeline", "worker", "control", "snapshot", "publish"},
    "worker": {"control"},
}


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def crate_refs(text):
    """Top-level module names referenced as crate::X in `text` (comments stripped)."""
    text = strip_comments(text)
    refs = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", text))
    # `use crate::{a, b::c, ...}` groups (possibly nested, over several lines).
    for m in re.finditer(r"\bcrate::\{", text):
        depth, i = 1, m.end()
        start = i
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        group = text[start : i - 1]
        # Only the names at depth 0 of the group are top-level modules.
        depth, token = 0, ""
        for ch in group + ",":
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                name = token.strip().split("::", 1)[0].strip()
                if re.fullmatch(r"[a-z_][a-z0-9_]*", name) and name != "self":
                    refs.add(name)
                token = ""
                continue
            if depth == 0 and ch not in "{}":
                token += ch
    return refs


def top_module(rel):
    first = rel.split(os.sep, 1)[0]
    return first[:-3] if first.endswith(".rs") else first


def graph(files):
    edges = {}
    where = {}
    for rel in files:
        mod = top_module(rel)
        with open(os.path.join(SRC, rel), encoding="utf-8") as f:
            refs = crate_refs(f.read())
        edges.setdefault(mod, set())
        for r in refs:
            if r != mod:
                edges[mod].add(r)
                where.setdefault((mod, r), []).append(rel)
    return edges, where


def sccs(edges):
    """Tarjan's strongly connected components."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    lib, binary = [], []
    for dirpath, _, names in os.walk(SRC):
        for n in names:
            if n.endswith(".rs"):
                rel = os.path.relpath(os.path.join(dirpath, n), SRC)
                if rel == "lib.rs":
                    continue
                (binary if rel in BIN_FILES else lib).append(rel)
    problems = []
    for label, files in (("library", lib), ("binary", binary)):
        edges, where = graph(sorted(files))
        for comp in sccs(edges):
            if len(comp) > 1:
                detail = "; ".join(
                    f"{a} -> {b} ({', '.join(where[(a, b)])})"
                    for a in comp
                    for b in sorted(edges[a])
                    if b in comp
                )
                problems.append(f"{label}: import cycle among {comp}: {detail}")
        if label != "library":
            continue
        for mod, banned in FORBIDDEN.items():
            for dep in sorted(edges.get(mod, ())):
                if banned is None or dep in banned:
                    problems.append(
                        f"{mod} must not import {dep}: {', '.join(where[(mod, dep)])}"
                    )
        if "-v" in sys.argv:
            for mod in sorted(edges):
                print(f"{mod} -> {', '.join(sorted(edges[mod])) or '(nothing)'}")
    if problems:
        print("module graph check FAILED:")
        for p in problems:
            print("  " + p)
        return 1
    print(f"module graph: no cycle, layering rules hold ({len(lib)} library files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
