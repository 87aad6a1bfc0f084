#!/usr/bin/env python3
"""Import circles between the files of each crate: file A names an item of file B (through
`crate::`, `super::`, `self::` or a child module's name) while B, directly or through other
files, names an item of A. Prints every circle; exits 1 if there is one. Declaring a child
module (`mod x;`) is not an import; naming its items is. A child naming its ancestors' items
(`super::Ctx`, `crate::Config`) is not counted either: Rust's module tree makes the parent the
place of what its children share, so that edge points the way the tree already does.
Usage: python3 .ci/import-cycles.py (from the repository root)."""
import os, re, sys

def modules(src):
    mods = {}
    for dp, _, fs in os.walk(src):
        for f in fs:
            if not f.endswith('.rs'):
                continue
            p = os.path.join(dp, f)
            rel = os.path.relpath(p, src)[:-3].split(os.sep)
            if rel[0] == 'bin' or rel[0] == 'main' and len(rel) == 1 and os.path.exists(os.path.join(src, 'lib.rs')):
                continue
            if rel[-1] in ('lib', 'main', 'mod'):
                rel = rel[:-1]
            mods[tuple(rel)] = p
    return mods

def strip(text):
    text = re.sub(r'//[^\n]*', '', text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)

PATH = re.compile(r'\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+|[a-z_][a-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)+)')

def resolve(cur, path, mods, children):
    parts = path.split('::')
    if parts[0] == 'crate':
        base, rest = (), parts[1:]
    elif parts[0] in ('super', 'self'):
        base = cur
        while parts and parts[0] in ('super', 'self'):
            if parts[0] == 'super':
                base = base[:-1]
            parts = parts[1:]
        rest = parts
    elif parts[0] in children:
        base, rest = cur, parts
    else:
        return None
    best = None
    for i in range(len(rest) + 1):
        m = base + tuple(rest[:i])
        if m in mods:
            best = m
    return best

def crate_cycles(src):
    mods = modules(src)
    edges = {m: set() for m in mods}
    for m, p in mods.items():
        text = strip(open(p).read())
        # a `mod tests { ... }` block's uses are test-only: skip what follows #[cfg(test)]
        text = text.split('#[cfg(test)]')[0]
        children = set(re.findall(r'^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;', text, re.M))
        # expand `use a::{b, c::d}` groups into paths
        for u in re.findall(r'\buse\s+([^;]+);', text):
            u = re.sub(r'\s+', '', u)
            def expand(s):
                mm = re.match(r'^(.*?)::\{(.*)\}$', s)
                if not mm:
                    return [s]
                pre, body = mm.groups()
                out, depth, cur = [], 0, ''
                for ch in body:
                    if ch == ',' and depth == 0:
                        out.append(cur); cur = ''
                        continue
                    depth += ch == '{'
                    depth -= ch == '}'
                    cur += ch
                if cur:
                    out.append(cur)
                return [x for part in out for x in expand(pre + '::' + part)]
            for path in expand(u):
                path = path.split(' as ')[0]
                t = resolve(m, path, mods, children)
                if t is not None and t != m:
                    edges[m].add(t)
        for path in PATH.findall(text):
            t = resolve(m, path, mods, children)
            if t is not None and t != m:
                edges[m].add(t)
    for m in edges:
        edges[m] = {t for t in edges[m] if t != m[:len(t)]}
    # strongly connected components (Tarjan)
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1
        stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)
    sys.setrecursionlimit(10000)
    for v in mods:
        if v not in index:
            visit(v)
    return [[os.path.relpath(mods[c]) for c in comp] for comp in out]

bad = 0
for crate in sorted(os.listdir('.')):
    src = os.path.join(crate, 'src')
    if os.path.exists(os.path.join(crate, 'Cargo.toml')) and os.path.isdir(src):
        for comp in crate_cycles(src):
            bad += 1
            print(f'{crate}: circle between ' + ', '.join(sorted(comp)))
print(f'{bad} import circle(s)')
sys.exit(1 if bad else 0)
