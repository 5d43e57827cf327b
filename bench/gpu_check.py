#!/usr/bin/env python3
"""bench/gpu_run --configure-only's checks, run HERE (Debian bookworm, dpkg).

headers COMPILE_COMMANDS DEPS: preprocesses (-E -H) the sources that include a
  library's headers, with the exact flags of the configure, and fails on a
  header found outside DEPS (the unpacked .debs), torch, CUDA, the compiler's
  own folders and the C/C++ runtime packages (libc6-dev, linux-libc-dev,
  libstdc++-*-dev, libcrypt-dev): such a header is on this machine only, not on
  the GPU machine. Also fails when gloo/algorithm.h (flame guards it with
  __has_include, so its absence would pass silently) is not found in DEPS.
libraries FLAME DEPS: ldd FLAME (with the LD_LIBRARY_PATH of the caller) and
  fails on a library resolved outside DEPS, torch's folders and the C runtime.
"""
import json
import os
import re
import shlex
import subprocess
import sys

# Sources that include a library's own headers (the rest reach fmt, spdlog and
# nlohmann through the precompiled header, which every checked source includes).
LIBRARY_INCLUDE = re.compile(r"#include <(gloo|webp|turbojpeg|png|archive|pcre2|openssl|CLI|zlib)|__has_include")
RUNTIME = re.compile(r"^(libc6-dev|linux-libc-dev|libstdc\+\+-\d+-dev|libgcc-\d+-dev|libcrypt-dev)(:|$)")
BASE_LIBS = re.compile(r"^(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux-x86-64|linux-vdso|libutil|libmvec)\.so")


def headers(compile_commands, deps):
    entries = json.load(open(compile_commands))
    checked, found = [], {}
    for e in entries:
        src = e["file"]
        text = open(src, encoding="utf-8", errors="replace").read()
        if not (LIBRARY_INCLUDE.search(text) or src.endswith("/cli/main.cpp")):
            continue
        args = shlex.split(e["command"])
        i = args.index("-o")
        del args[i:i + 2]
        args[args.index("-c")] = "-E"
        r = subprocess.run(args + ["-H", "-o", os.devnull], cwd=e["directory"], capture_output=True, text=True)
        rel = os.path.relpath(src)
        if r.returncode != 0:
            print(f"gpu_check: {rel} does not preprocess against the .debs:\n" + r.stderr[-2000:])
            return 1
        checked.append(rel)
        for line in r.stderr.splitlines():
            m = re.match(r"^\.+ (\S+)$", line)
            if m:
                found.setdefault(os.path.normpath(m.group(1)), rel)
    allowed = [os.path.realpath(deps), os.getcwd() + "/", "/usr/local/cuda", "/usr/lib/gcc/"]  # cwd: flame's own
    torch_dirs = [p for p in found if "/site-packages/" in p]
    outside = sorted(p for p in found if not any(os.path.realpath(p).startswith(a) for a in allowed)
                     and p not in torch_dirs and "/cmake_pch.hxx" not in p)
    owners = {}
    if outside:
        r = subprocess.run(["dpkg", "-S"] + [os.path.realpath(p) for p in outside], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            pkgs, path = line.split(": ", 1)
            owners[path] = pkgs
    leaks = [(p, owners.get(os.path.realpath(p), "no package"), found[p]) for p in outside
             if not all(RUNTIME.match(x.strip()) for x in owners.get(os.path.realpath(p), "?").split(","))]
    gloo = any(p.startswith(os.path.realpath(deps)) and p.endswith("gloo/algorithm.h") for p in map(os.path.realpath, found))
    print(f"gpu_check: {len(checked)} sources preprocessed ({', '.join(checked)}); {len(found)} headers: "
          f"{sum(os.path.realpath(p).startswith(os.path.realpath(deps)) for p in found)} from the .debs, "
          f"{len(torch_dirs)} from torch, {len(outside) - len(leaks)} from the C/C++ runtime, {len(leaks)} from elsewhere")
    for p, pkg, src in leaks:
        print(f"gpu_check: {p} (package {pkg}, via {src}) is not in the .debs: add its -dev package to bench/gpu_deps")
    if not gloo:
        print("gpu_check: gloo/algorithm.h not found in the .debs: distributed.cpp would build without Gloo (libgloo-dev)")
    return 1 if leaks or not gloo else 0


def libraries(flame, deps):
    r = subprocess.run(["ldd", flame], capture_output=True, text=True)
    if r.returncode != 0:
        print("gpu_check: ldd failed: " + r.stderr)
        return 1
    bad, n = [], 0
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*(\S+)(?: => (\S+|not found))?", line)
        if not m:
            continue
        name, path = m.group(1), m.group(2) or m.group(1)
        n += 1
        ok = (path.startswith(os.path.realpath(deps)) or path.startswith(deps) or "/site-packages/" in path
              or "/usr/local/cuda" in path or BASE_LIBS.match(os.path.basename(name)))
        if path == "not found" or not ok:
            bad.append(f"{name} => {path}")
    print(f"gpu_check: {n} shared libraries of {flame}: {n - len(bad)} from the .debs, torch or the C runtime")
    for b in bad:
        print(f"gpu_check: {b}: not in the .debs: add its package to bench/gpu_deps' runtime list")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("headers", "libraries"):
        sys.exit(__doc__)
    sys.exit(headers(sys.argv[2], sys.argv[3]) if sys.argv[1] == "headers" else libraries(sys.argv[2], sys.argv[3]))
