#!/usr/bin/env python3
"""Structure counts of issue 19, for a checkout (default: this repository).

usage: python3 scripts/core_metrics.py [-v] [REPO]

- unscoped element pointers: Swift files outside the backend folders
  (Sources/TandemCore/Backends/, Sources/TandemDistributed/Transports/) that take a tensor's
  element pointer without a scope (`elementPointer`, `rawElements`, `floatElements`), besides
  their definitions (Tensor.swift, Tensor+Unsafe.swift);
- raw-pointer files: Swift files outside the backend folders that name any Unsafe…Pointer type
  (scoped accessors, system calls and file parsing included);
- gradient-rule sites: `record(` / `customFunction(` calls that attach a backward closure,
  outside Sources/TandemCore/Derivatives/ (and the recording function itself);
- autocast sites: files outside Autocast.swift and the dispatcher (Sources/TandemCore/Dispatch/)
  that consult autocast or handle low-precision operands themselves (`Autocast.`, `castTarget`,
  `widened()`, `isLowPrecision { return`);
- withExtendedLifetime calls in Sources/, and how many are outside the backend folders;
- CLI lines: Swift lines of the `tandem` executable target (Sources/tandem);
- the longest functions (lines from `func`/`init` to its closing brace).
"""
import os, re, sys

args = [a for a in sys.argv[1:] if a != "-v"]
repo = args[0] if args else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
src = os.path.join(repo, "Sources")
files = []
for root, _, names in os.walk(src):
    for n in names:
        if n.endswith(".swift"):
            files.append(os.path.join(root, n))
rel = lambda p: os.path.relpath(p, repo)
text = {p: open(p, encoding="utf-8").read() for p in files}

backend_dirs = ("Sources/TandemCore/Backends/", "Sources/TandemDistributed/Transports/")
ptr = re.compile(r"Unsafe(Mutable)?(Raw)?(Buffer)?Pointer|elementPointer")
raw_files = [rel(p) for p in files if not rel(p).startswith(backend_dirs) and ptr.search(re.sub(r"//.*", "", text[p]))]
unscoped = re.compile(r"\.elementPointer\(|[^a-zA-Z]elementPointer\(|\.rawElements|\.floatElements")
unscoped_files = [rel(p) for p in files if not rel(p).startswith(backend_dirs)
                  and not rel(p).endswith(("TandemCore/Tensor.swift", "TandemCore/Tensor+Unsafe.swift"))
                  and unscoped.search(re.sub(r"//.*", "", text[p]))]

rule = re.compile(r"\b(record|customFunction)\(\s*(\"|\.|op\b|name\b|[a-z])")
rule_sites = 0
for p in files:
    if rel(p).startswith("Sources/TandemCore/Derivatives/"):
        continue
    for line in text[p].splitlines():
        code = re.sub(r"//.*", "", line)
        if re.search(r"func (record|customFunction)\b", code):
            continue
        if re.search(r"\b(Tensor\.|Dispatch\.)?(record|customFunction)\(", code) and "{" in code and ("record(spunFor" not in code):
            rule_sites += 1

auto = re.compile(r"Autocast\.|castTarget|widened\(\)|isLowPrecision \{ return")
auto_files = [rel(p) for p in files if auto.search(re.sub(r"//.*", "", text[p]))
              and not rel(p).endswith("Autocast.swift") and not rel(p).startswith("Sources/TandemCore/Dispatch/")]

extended = sum(len(re.findall(r"withExtendedLifetime\(", re.sub(r"//.*", "", text[p]))) for p in files)
extended_outside = sum(len(re.findall(r"withExtendedLifetime\(", re.sub(r"//.*", "", text[p]))) for p in files
                       if not rel(p).startswith(backend_dirs))
cli = sum(text[p].count("\n") for p in files if rel(p).startswith("Sources/tandem/"))

funcs = []
decl = re.compile(r"^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|private|fileprivate|internal|open|static|final|override|mutating|nonisolated|@inline\(__always\)|@discardableResult)\s+)*(func\s+[^\s(<]+|init[?!]?)\s*[<(]")
for p in files:
    lines = text[p].splitlines()
    i = 0
    while i < len(lines):
        m = decl.match(lines[i])
        if m:
            depth, started, j = 0, False, i
            while j < len(lines):
                code = re.sub(r"//.*", "", lines[j])
                code = re.sub(r'"(\\.|[^"\\])*"', '""', code)
                depth += code.count("{") - code.count("}")
                if "{" in code:
                    started = True
                if started and depth <= 0:
                    break
                if not started and j > i + 12:
                    break
                j += 1
            if started:
                funcs.append((j - i + 1, f"{rel(p)}:{i + 1} {m.group(1)}"))
        i += 1
funcs.sort(reverse=True)

print(f"files taking unscoped element pointers outside backend folders: {len(unscoped_files)}")
print(f"files naming any raw pointer type outside backend folders: {len(raw_files)} of {len(files)} Swift files")
print(f"gradient-rule sites outside Derivatives: {rule_sites}")
print(f"files consulting autocast outside the policy: {len(auto_files)}")
print(f"withExtendedLifetime calls: {extended} ({extended_outside} outside backend folders)")
print(f"CLI lines (Sources/tandem): {cli}")
print("longest functions: " + "; ".join(f"{n} lines {w}" for n, w in funcs[:5]))
if "-v" in sys.argv:
    print("\n".join(["unscoped:"] + unscoped_files + ["raw-pointer files:"] + raw_files + ["autocast files:"] + auto_files))
