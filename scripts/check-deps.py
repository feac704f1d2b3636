#!/usr/bin/env python3
"""Every command the tests, scripts and benchmarks run is installed by scripts/setup.sh.

Run by scripts/test.sh right after setup.sh (so on a fresh machine a command that setup.sh does
not install is simply missing, and on a developer's machine a package installed by hand is
caught by the package check below). It:

1. parses every shell script under scripts/, tests/, bench/, packaging/ and .ci/ with shfmt's
   real bash parser (`shfmt --tojson`), and collects the command word of every simple command,
   looking through wrappers (`ip netns exec NS cmd`, `timeout 5 cmd`, `env A=1 cmd`,
   `taskset -c 1 cmd`, `nohup`, `setsid`, `xargs`, `exec`, `command`) and into the script
   text of `bash -c '...'` / `sh -c "..."`;
2. adds the programs Rust tests and tools start with `Command::new("...")`;
3. ignores shell builtins and keywords, functions the scripts define, variables, and the
   project's own binaries (fiberlb-*, the repository's scripts);
4. requires each remaining command to be on PATH and to belong to a Debian package that one of
   the setup scripts lists in its `pkgs=(...)` (or an Essential/required package that every
   Debian has), or to the Rust toolchain that setup.sh requires (cargo, rustup).

Exit status 1 with file:line for each command that breaks a rule, 0 otherwise.
"""
import json
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP_SCRIPTS = ["scripts/setup.sh", "scripts/deps-afxdp.sh", "scripts/deps-dpdk.sh"]
SHELL_DIRS = ["scripts", "tests", "bench", "packaging", ".ci"]
RUST_DIRS = ["tests", "controlplane", "dataplane", "bench", "shared"]

BUILTINS = set("""
. : [ [[ alias bg bind break builtin caller cd command compgen complete compopt continue declare
dirs disown echo enable eval exec exit export false fc fg getopts hash help history jobs kill
let local logout mapfile popd printf pushd pwd read readarray readonly return set shift shopt
source suspend test times trap true type typeset ulimit umask unalias unset wait
""".split())
# Commands that run the command given as their next non-option word(s).
WRAPPERS = {"timeout": 1, "nohup": 0, "setsid": 0, "exec": 0, "command": 0, "env": 0,
            "taskset": 1, "xargs": 0, "nice": 0, "stdbuf": 0, "sudo": 0, "chrt": 1,
            "unshare": 0, "flock": 1}
# The toolchain setup.sh requires (installed by rustup; the quickstart installs it).
TOOLCHAIN = {"cargo", "rustup", "rustc", "rustfmt", "cargo-clippy"}
# cargo subcommands installed by the CI scripts themselves with `cargo install`.
CARGO_INSTALLED = {"cargo-fuzz", "cargo-deny"}


def run_shfmt(text):
    p = subprocess.run(["shfmt", "--tojson"], input=text.encode(), capture_output=True)
    if p.returncode != 0:
        return None, p.stderr.decode(errors="replace").strip()
    return json.loads(p.stdout), None


def word_text(word, placeholder=None):
    """The literal text of a shfmt Word, or None when it has expansions (placeholder: use it)."""
    out = []
    for part in word.get("Parts", []):
        t = part.get("Type")
        if t == "Lit":
            out.append(part.get("Value", ""))
        elif t == "SglQuoted":
            out.append(part.get("Value", ""))
        elif t == "DblQuoted":
            for q in part.get("Parts", []):
                if q.get("Type") == "Lit":
                    out.append(q.get("Value", ""))
                elif placeholder is None:
                    return None
                else:
                    out.append(placeholder)
        elif placeholder is None:
            return None
        else:
            out.append(placeholder)
    return "".join(out)


def walk(node, visit):
    if isinstance(node, dict):
        visit(node)
        for v in node.values():
            walk(v, visit)
    elif isinstance(node, list):
        for v in node:
            walk(v, visit)


def strip_wrappers(words):
    """words: list of literal-or-None; returns the index of the real command word."""
    i = 0
    while i < len(words):
        w = words[i]
        if w is None:
            return i
        if w == "ip" and words[i + 1:i + 3] == ["netns", "exec"]:
            i += 4  # ip netns exec NS cmd
            continue
        if w == "ip" and len(words) > i + 3 and words[i + 1] == "-n" and words[i + 3] == "exec":
            i += 4
            continue
        if w in WRAPPERS:
            i += 1
            # options, VAR=value (env), and the wrapper's positional arguments
            skip = WRAPPERS[w]
            while i < len(words) and words[i] is not None and (
                    words[i].startswith("-") or (w == "env" and "=" in words[i])):
                if w == "timeout" and words[i] in ("-s", "-k", "--signal", "--kill-after"):
                    i += 1
                i += 1
            i += skip
            continue
        return i
    return i


def shell_commands(path, text, found, functions, errors, depth=0):
    tree, err = run_shfmt(text)
    if tree is None:
        if depth == 0:
            errors.append(f"{path}: shfmt cannot parse it: {err}")
        return

    def visit(n):
        t = n.get("Type")
        if t == "FuncDecl":
            functions.add(n["Name"]["Value"])
        if t != "CallExpr" or not n.get("Args"):
            return
        line = n["Pos"]["Line"]
        words = [word_text(a) for a in n["Args"]]
        i = strip_wrappers(words)
        if i >= len(words) or words[i] is None:
            return
        cmd = words[i]
        found.setdefault(cmd, []).append(f"{path}:{line}")
        # bash -c 'script' / sh -c "script": parse the script too (expansions as placeholders).
        if cmd in ("bash", "sh") and i + 2 < len(words) + 1:
            rest = n["Args"][i + 1:]
            for j, a in enumerate(rest[:-1]):
                if word_text(a) == "-c":
                    inner = word_text(rest[j + 1], placeholder="X")
                    if inner:
                        shell_commands(f"{path}:{line} (bash -c)", inner, found, functions,
                                       errors, depth + 1)
                    break

    walk(tree, visit)


def is_shell_script(path):
    if path.endswith(".sh") or path.endswith("/.ci/run"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.readline()
    except OSError:
        return False
    return head.startswith(b"#!") and (b"bash" in head or head.rstrip().endswith(b"/sh"))


def setup_packages():
    pkgs = set()
    for s in SETUP_SCRIPTS:
        text = open(os.path.join(ROOT, s)).read()
        for m in re.finditer(r"^\s*pkgs=\(([^)]*)\)", text, re.M):
            pkgs.update(re.sub(r"#[^\n]*", "", m.group(1)).split())
    return pkgs


def package_of(path):
    real = os.path.realpath(path)
    for p in (path, real, real.replace("/usr/", "/", 1) if real.startswith("/usr/") else real):
        q = subprocess.run(["dpkg-query", "-S", p], capture_output=True, text=True)
        if q.returncode == 0:
            # "pkg[:arch][, pkg2]: /path"; "diversion by X from/to: /path" lines are not owners
            lines = [x for x in q.stdout.splitlines() if not x.startswith("diversion ")]
            if lines:
                return [x.strip().split(":")[0] for x in lines[0].split(": ")[0].split(",")]
    return None


def with_depends(pkgs):
    """The listed packages and what they pull in directly (pkg-config -> pkgconf, ...)."""
    out = set(pkgs)
    for p in pkgs:
        q = subprocess.run(["dpkg-query", "-W", "-f=${Depends},${Pre-Depends}", p],
                           capture_output=True, text=True)
        for dep in re.split(r"[,|]", q.stdout):
            name = dep.strip().split(" ")[0].split(":")[0]
            if name:
                out.add(name)
    return out


def always_there(pkg):
    q = subprocess.run(["dpkg-query", "-W", "-f=${Essential} ${Priority}", pkg],
                       capture_output=True, text=True)
    if q.returncode != 0:
        return False
    ess, _, prio = q.stdout.partition(" ")
    return ess == "yes" or prio == "required"


def main():
    found, functions, errors = {}, set(), []
    for d in SHELL_DIRS:
        for base, dirs, files in os.walk(os.path.join(ROOT, d)):
            dirs[:] = [x for x in dirs if x not in ("target", "corpus", "artifacts", ".git")]
            for f in files:
                p = os.path.join(base, f)
                if is_shell_script(p):
                    shell_commands(os.path.relpath(p, ROOT), open(p, errors="replace").read(),
                                   found, functions, errors)
    for d in RUST_DIRS:
        for base, dirs, files in os.walk(os.path.join(ROOT, d)):
            dirs[:] = [x for x in dirs if x != "target"]
            for f in files:
                if not f.endswith(".rs"):
                    continue
                p = os.path.join(base, f)
                for n, line in enumerate(open(p, errors="replace"), 1):
                    for m in re.finditer(r'Command::new\("([^"]+)"\)', line):
                        found.setdefault(m.group(1), []).append(f"{os.path.relpath(p, ROOT)}:{n}")

    own_scripts = {os.path.basename(p) for d in SHELL_DIRS
                   for p, _, _ in [(x, 0, 0) for x in _all_files(os.path.join(ROOT, d))]}
    listed = with_depends(setup_packages())
    bad, checked = [], []
    for cmd, places in sorted(found.items()):
        if (cmd in BUILTINS or cmd in functions or cmd.startswith(("$", "-", "./", "../"))
                or ("/" in cmd and not cmd.startswith("/"))
                or "=" in cmd or cmd.startswith("fiberlb") or cmd in own_scripts
                or cmd in TOOLCHAIN or not re.match(r"^[A-Za-z0-9_./+-]+$", cmd)
                or cmd in ("X",)):
            continue
        if cmd in CARGO_INSTALLED:
            continue
        checked.append(cmd)
        where = ", ".join(places[:3]) + (f" (+{len(places) - 3} more)" if len(places) > 3 else "")
        path = cmd if cmd.startswith("/") else shutil.which(cmd)
        if not path or not os.path.exists(path):
            bad.append(f"{cmd}: not installed after setup.sh (used at {where}): "
                       "add its Debian package to a pkgs=(...) list in scripts/setup.sh")
            continue
        pkgs = package_of(path)
        if not pkgs and not cmd.startswith("/"):
            # PATH may prefer a tool the machine image put in /usr/local or ~ (pyenv's python3,
            # a second git): what counts is that setup.sh installs the distribution's own.
            for d in ("/usr/bin", "/usr/sbin", "/bin", "/sbin"):
                if os.path.exists(os.path.join(d, cmd)):
                    path = os.path.join(d, cmd)
                    pkgs = package_of(path)
                    break
        if not pkgs:
            bad.append(f"{cmd}: {path} belongs to no Debian package (used at {where}): "
                       "install it from a package that setup.sh lists")
            continue
        if any(p in listed for p in pkgs) or any(always_there(p) for p in pkgs):
            continue
        bad.append(f"{cmd}: from package {'/'.join(pkgs)}, which no setup script installs "
                   f"(used at {where}): add it to a pkgs=(...) list in scripts/setup.sh")
    for e in errors:
        print(f"check-deps: {e}", file=sys.stderr)
    for b in bad:
        print(f"check-deps: {b}", file=sys.stderr)
    if bad or errors:
        return 1
    print(f"check-deps: {len(checked)} external commands used by tests/, scripts/, bench/ — "
          f"all installed by setup.sh ({len(listed)} packages listed) or always on Debian")
    if "-v" in sys.argv:
        print("  " + " ".join(checked))
    return 0


def _all_files(d):
    for base, dirs, files in os.walk(d):
        dirs[:] = [x for x in dirs if x not in ("target", "corpus", "artifacts")]
        for f in files:
            yield os.path.join(base, f)


if __name__ == "__main__":
    sys.exit(main())
