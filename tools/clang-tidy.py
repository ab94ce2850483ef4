#!/usr/bin/env python3
"""Runs clang-tidy (checks in .clang-tidy) on the production C++ sources of services/, two at a time, and fails
on any finding. Clean results are cached per machine, so an unchanged tree is checked in seconds:

    tools/clang-tidy.py build/release               # every production source
    tools/clang-tidy.py build/release FILE...       # only these (make test-quick passes the changed ones)
    tools/clang-tidy.py build/release --no-cache    # check everything again, ignoring the cache

A file's result is keyed by what clang-tidy would see: the file preprocessed with its own compile command (so every
header it includes, ours or a library's, is part of the key and a changed header invalidates its dependents), that
command, the .clang-tidy configuration and the clang-tidy and compiler versions. Paths of the checkout are
replaced by a placeholder, so a fresh clone elsewhere reuses the cache ($VIGIE_TOOL_CACHE/clang-tidy, default
~/.cache/vigie/clang-tidy). Only clean results are cached: a finding is found again on every run. Stdlib only.
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("VIGIE_TOOL_CACHE", Path.home() / ".cache" / "vigie")) / "clang-tidy"
CLANG_TIDY = "clang-tidy-14"
# GCC 12 + Boost 1.74 need <utility> first (the build forces it with -include); clang-tidy needs Asio's coroutines on.
EXTRA_ARGS = ["--extra-arg=-include", "--extra-arg=utility", "--extra-arg=-DBOOST_ASIO_HAS_CO_AWAIT=1"]
# GCC's precompiled-header flags mean nothing to clang; the dependency-file flags must not touch the build's files.
DROPPED_FLAGS = {"-Winvalid-pch", "-MD", "-MMD"}
DROPPED_WITH_VALUE = {"-o", "-MF", "-MT", "-MQ"}


def production_sources() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "services/*.cpp"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [f for f in listed if not f.endswith(("_fuzz.cpp", "_test.cpp", "_bench.cpp"))]


def clean_arguments(entry: dict) -> list[str]:
    """The entry's compile command without precompiled-header, output and dependency-file flags."""
    args = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    kept: list[str] = []
    skip_next = False
    for i, arg in enumerate(args):
        if skip_next:
            skip_next = False
            continue
        if arg in DROPPED_WITH_VALUE:
            skip_next = True
            continue
        if arg == "-include" and i + 1 < len(args) and args[i + 1].endswith("cmake_pch.hxx"):
            skip_next = True
            continue
        if arg in DROPPED_FLAGS or (arg == "-include" and args[i + 1 : i + 2] == ["utility"]):
            if arg == "-include":
                skip_next = True
            continue
        kept.append(arg)
    return kept


def tool_version(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def cache_key(entry: dict, arguments: list[str], fixed: bytes) -> str:
    """sha256 of the preprocessed file, its command and the fixed inputs, with checkout paths made neutral."""
    source = entry["file"]
    preprocess = [a for a in arguments if a not in ("-c", source)] + ["-include", "utility", "-E", "-P", source]
    result = subprocess.run(preprocess, cwd=entry["directory"], capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"preprocessing {source} failed: {result.stderr.decode(errors='replace')[-2000:]}")
    root = str(ROOT).encode()
    digest = hashlib.sha256(fixed)
    digest.update(shlex.join(arguments).encode().replace(root, b"@ROOT@"))
    digest.update(b"\0")
    digest.update(result.stdout.replace(root, b"@ROOT@"))
    return digest.hexdigest()


def check(entry: dict, database: Path, fixed: bytes, use_cache: bool) -> tuple[str, bool, str]:
    """(file, came from the cache, findings — empty when clean)."""
    arguments = clean_arguments(entry)
    key = cache_key(entry, arguments, fixed)
    stamp = CACHE / key[:2] / key
    if use_cache and stamp.exists():
        return entry["file"], True, ""
    result = subprocess.run(
        [CLANG_TIDY, "--quiet", "-p", str(database), *EXTRA_ARGS, entry["file"]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    findings = result.stdout.strip()
    if result.returncode != 0 or "warning:" in findings or "error:" in findings:
        return entry["file"], False, findings or result.stderr.strip() or f"{CLANG_TIDY} exited {result.returncode}"
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(os.path.relpath(entry["file"], ROOT) + "\n")
    return entry["file"], False, ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", type=Path, help="a build directory with compile_commands.json")
    parser.add_argument("files", nargs="*", help="only these sources (default: every production source)")
    parser.add_argument("--no-cache", action="store_true", help="check every file again")
    parser.add_argument("--jobs", type=int, default=2, help="files checked at once (default 2)")
    args = parser.parse_args()
    commands = args.build_dir / "compile_commands.json"
    if not commands.is_file():
        parser.error(f"{commands} not found; configure that build first")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    by_file = {str(Path(e["directory"], e["file"]).resolve()): e for e in json.loads(commands.read_text())}
    wanted = args.files or production_sources()
    entries = []
    for name in wanted:
        entry = by_file.get(str((ROOT / name).resolve()))
        if entry is None:
            parser.error(f"{name} is not in {commands}")
        entries.append(dict(entry, file=str(Path(entry["directory"], entry["file"]).resolve())))

    fixed = b"\0".join(
        [
            tool_version([CLANG_TIDY, "--version"]).encode(),
            tool_version([clean_arguments(entries[0])[0], "--version"]).encode() if entries else b"",
            (ROOT / ".clang-tidy").read_bytes(),
            " ".join(EXTRA_ARGS).encode(),
        ]
    )
    started = time.monotonic()
    failed: list[str] = []
    cached = 0
    with tempfile.TemporaryDirectory() as tmp:
        # clang-tidy reads the commands from a private database without the GCC-only flags.
        database = Path(tmp)
        rewritten = [dict(e, arguments=clean_arguments(e)) for e in by_file.values()]
        for entry in rewritten:
            entry.pop("command", None)
        (database / "compile_commands.json").write_text(json.dumps(rewritten))
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(check, e, database, fixed, not args.no_cache) for e in entries]
            for future in concurrent.futures.as_completed(futures):
                name, from_cache, findings = future.result()
                cached += from_cache
                if findings:
                    failed.append(name)
                    print(findings, flush=True)
    seconds = time.monotonic() - started
    summary = f"{len(entries)} files, {cached} unchanged since a clean check (cache), {len(entries) - cached} checked"
    if failed:
        print(f"clang-tidy: findings in {len(failed)} of {summary}, {seconds:.0f} s", file=sys.stderr)
        return 1
    print(f"clang-tidy: clean: {summary}, {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
