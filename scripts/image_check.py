"""Rebuild the Dockerfile's build stages from the build context `docker build .` would send, without a
Docker daemon, and start the result the way the runtime stage would.

Why: no Docker engine runs on our CI machines, and the image once failed to build because its build stage
copied less than Cargo.toml names. This check catches that class of drift on every run:

1. The context is the repository folder minus `.dockerignore`, matched with docker-py's own implementation
   of Docker's rules (`docker.utils.build.exclude_paths`), not a copy of them.
2. Every stage gets a folder standing for its filesystem; FROM <earlier stage> starts from a copy of it;
   WORKDIR, COPY (with --from) and the cargo commands of RUN lines (`cargo chef prepare|cook`, `cargo build`)
   are carried out there, with `--locked` as written. Other RUN lines (apt-get, useradd, strip) need the
   base image and are listed as not run; `cargo install cargo-chef --version V` is checked against the
   cargo-chef this machine has. Cargo builds share one target folder so dependencies are compiled once;
   with `--profile dev` (the default here) `--release` is dropped and the runtime stage's COPY of
   target/release/<bin> takes target/debug/<bin>.
3. The runtime stage is checked: it runs as a non-root USER, EXPOSEs the port of its
   KANDJI_CONNECTOR_LISTEN, has a HEALTHCHECK; then its ENTRYPOINT + CMD is started with its ENV (listen
   address moved to a free loopback port, /data moved to a temporary folder, keys supplied as files through
   the *_FILE settings) and the HEALTHCHECK command must report healthy.

Exit status 0 when everything holds; otherwise 1 with what failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import base64
from dataclasses import dataclass, field
from pathlib import Path

from docker.utils.build import exclude_paths

CHEF_CMD = re.compile(r"^cargo\s+(chef\s+(prepare|cook)|build)\b")


@dataclass
class Instruction:
    line: int
    op: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def fail(msg: str) -> None:
    print(f"image-check: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_dockerfile(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    logical, start = "", 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if logical and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped, as Docker does
        if not logical:
            start = n
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        op, _, args = logical.partition(" ")
        op, args = op.upper(), args.strip()
        logical = ""
        if op == "FROM":
            m = re.match(r"^(\S+)(?:\s+AS\s+(\S+))?$", args, re.IGNORECASE)
            if not m:
                fail(f"Dockerfile:{start}: cannot read FROM {args!r}")
            stages.append(Stage(base=m.group(1), name=m.group(2)))
        elif not stages:
            if op != "ARG":
                fail(f"Dockerfile:{start}: {op} before the first FROM")
        else:
            stages[-1].instructions.append(Instruction(start, op, args))
    if not stages:
        fail("the Dockerfile has no FROM")
    return stages


def exec_form(args: str) -> list[str] | None:
    if args.startswith("["):
        return json.loads(args)
    return None


def copy_args(args: str) -> tuple[dict[str, str], list[str], str]:
    words = exec_form(args) or shlex.split(args)
    flags = {}
    while words and words[0].startswith("--"):
        k, _, v = words.pop(0)[2:].partition("=")
        flags[k] = v
    if len(words) < 2:
        fail(f"COPY needs a source and a destination: {args!r}")
    return flags, words[:-1], words[-1]


def build_context(repo: Path, dest: Path) -> int:
    ignore = repo / ".dockerignore"
    patterns = []
    if ignore.exists():
        for line in ignore.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append(line)
    files = sorted(exclude_paths(str(repo), patterns, dockerfile="Dockerfile"))
    count = 0
    for rel in files:
        src = repo / rel
        if src.is_dir() and not src.is_symlink():
            (dest / rel).mkdir(parents=True, exist_ok=True)
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel, follow_symlinks=False)
        count += 1
    return count


def copy_into(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True, symlinks=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=".")
    ap.add_argument("--work", default=None, help="folder for the emulated stages (default: image-check/ in the target folder, a stable path so that repeated runs reuse the crate's build)")
    ap.add_argument("--target-dir", required=True, help="shared cargo target folder")
    ap.add_argument("--profile", choices=["dev", "release"], default="dev")
    opts = ap.parse_args()

    repo = Path(opts.repo).resolve()
    target = Path(opts.target_dir).resolve()
    work = Path(opts.work or target / "image-check").resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    stages = parse_dockerfile(repo / "Dockerfile")

    context = work / "context"
    context.mkdir()
    n = build_context(repo, context)
    print(f"image-check: build context: {n} files (after .dockerignore)")
    for must_not in ["target", ".git"]:
        if (context / must_not).exists():
            fail(f".dockerignore lets {must_not}/ into the build context")

    roots: dict[str, Path] = {}
    workdirs: dict[str, str] = {}
    envs: dict[str, dict[str, str]] = {}
    cargo_env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    cargo_env.pop("RUSTFLAGS", None)
    profile_dir = "release" if opts.profile == "release" else "debug"

    for i, st in enumerate(stages):
        key = st.name or str(i)
        root = work / f"stage-{i}-{key}"
        if st.base in roots:
            shutil.copytree(roots[st.base], root, symlinks=True)
            wd, env = workdirs[st.base], dict(envs[st.base])
        else:
            root.mkdir()
            wd, env = "/", {}
        roots[key] = root
        runtime = i == len(stages) - 1
        for ins in st.instructions:
            where = f"Dockerfile:{ins.line}"
            if ins.op == "WORKDIR":
                wd = os.path.join(wd, ins.args)
                (root / wd.lstrip("/")).mkdir(parents=True, exist_ok=True)
            elif ins.op == "ENV":
                for k, v in re.findall(r"(\w+)=(\S+)", ins.args):
                    env[k] = v
            elif ins.op in ("COPY", "ADD"):
                flags, srcs, dst = copy_args(ins.args)
                from_root = context
                if "from" in flags:
                    if flags["from"] not in roots:
                        fail(f"{where}: COPY --from={flags['from']} names no earlier stage")
                    from_root = roots[flags["from"]]
                dst_path = root / os.path.join(wd, dst).lstrip("/")
                for s in srcs:
                    s_rel = s.lstrip("/") if "from" in flags else s
                    if "from" in flags and runtime and s.startswith("/src/target/"):
                        # The build stage's binary lives in the shared target folder.
                        rest = s.split("/target/", 1)[1]
                        rest = rest.replace("release/", f"{profile_dir}/", 1)
                        src_path = target / rest
                    else:
                        src_path = from_root / s_rel
                    if not src_path.exists():
                        fail(f"{where}: COPY source {s} does not exist in {'stage ' + flags['from'] if 'from' in flags else 'the build context'}")
                    if s.endswith("/.") or s == ".":
                        copy_into(src_path, dst_path)
                    elif dst.endswith("/") or (len(srcs) > 1):
                        copy_into(src_path, dst_path / src_path.name)
                    else:
                        copy_into(src_path, dst_path)
                print(f"image-check: {where}: COPY {' '.join(srcs)} -> {dst} ({st.name or 'runtime'})")
            elif ins.op == "RUN":
                commands = [c.strip() for c in ins.args.split("&&")]
                for c in commands:
                    m = re.match(r"^cargo\s+install\s+.*cargo-chef\s+--version\s+(\S+)", c)
                    if m:
                        have = subprocess.run(["cargo", "chef", "--version"], capture_output=True, text=True)
                        if have.returncode != 0 or m.group(1) not in have.stdout:
                            fail(f"{where}: the image installs cargo-chef {m.group(1)}; this machine has {have.stdout.strip() or 'none'} (scripts/image-check.sh installs it)")
                        print(f"image-check: {where}: cargo-chef {m.group(1)} present")
                    elif CHEF_CMD.match(c):
                        argv = shlex.split(c)
                        if opts.profile == "dev":
                            argv = [a for a in argv if a != "--release"]
                        print(f"image-check: {where}: running {' '.join(argv)}", flush=True)
                        cwd = root / wd.lstrip("/")
                        r = subprocess.run(argv, cwd=cwd, env=cargo_env)
                        if r.returncode != 0:
                            fail(f"{where}: `{c}` failed in the build context (exit {r.returncode})")
                    else:
                        print(f"image-check: {where}: not run here (needs the base image): {c[:70]}")
            elif ins.op in ("USER", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD", "VOLUME", "ARG", "LABEL"):
                pass
            else:
                print(f"image-check: {where}: {ins.op} not interpreted")
        workdirs[key], envs[key] = wd, env

    check_runtime(stages[-1], roots[stages[-1].name or str(len(stages) - 1)], envs, work)
    print("image-check: ok")


def check_runtime(st: Stage, root: Path, envs: dict, work: Path) -> None:
    ops = {ins.op: ins for ins in st.instructions}
    user = ops.get("USER")
    if user is None or user.args.split(":")[0] in ("0", "root"):
        fail("the runtime stage must set a non-root USER")
    env = {}
    for ins in st.instructions:
        if ins.op == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", ins.args)))
    listen = env.get("KANDJI_CONNECTOR_LISTEN", "")
    port = listen.rsplit(":", 1)[-1]
    expose = ops.get("EXPOSE")
    if expose is None or port not in expose.args.split():
        fail(f"the runtime stage must EXPOSE the port of KANDJI_CONNECTOR_LISTEN ({listen})")
    hc = ops.get("HEALTHCHECK")
    if hc is None or "CMD" not in hc.args:
        fail("the runtime stage needs a HEALTHCHECK")
    entry = exec_form(ops["ENTRYPOINT"].args) if "ENTRYPOINT" in ops else []
    cmd = exec_form(ops["CMD"].args) if "CMD" in ops else []
    hc_cmd = exec_form(hc.args.split("CMD", 1)[1].strip())
    if entry is None or cmd is None or hc_cmd is None:
        fail("ENTRYPOINT, CMD and HEALTHCHECK CMD must use the exec (JSON) form")
    binary = root / entry[0].lstrip("/")
    if not binary.exists():
        fail(f"ENTRYPOINT {entry[0]} was not copied into the runtime stage")

    data = work / "data"
    data.mkdir()
    port = free_port()
    keys = work / "api-keys"
    keys.write_text("image-check-key-0123456789abcdef\n")
    secret = work / "secret-key"
    secret.write_text(base64.b64encode(os.urandom(32)).decode())
    run_env = {k: v.replace("/data", str(data)) for k, v in env.items()}
    run_env["KANDJI_CONNECTOR_LISTEN"] = f"127.0.0.1:{port}"
    run_env["KANDJI_CONNECTOR_API_KEYS_FILE"] = str(keys)
    run_env["KANDJI_CONNECTOR_SECRET_KEY_FILE"] = str(secret)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("KANDJI_CONNECTOR_")}
    proc_env = dict(base_env, **run_env)
    argv = [str(binary)] + entry[1:] + cmd
    print(f"image-check: starting {' '.join([entry[0]] + entry[1:] + cmd)} with the image's ENV")
    proc = subprocess.Popen(argv, cwd=data, env=proc_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        hc_argv = [str(root / hc_cmd[0].lstrip("/"))] + hc_cmd[1:]
        deadline = time.time() + 30
        while True:
            r = subprocess.run(hc_argv, env=proc_env, capture_output=True, timeout=10)
            if r.returncode == 0:
                break
            if proc.poll() is not None or time.time() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                fail(f"the HEALTHCHECK never reported healthy (server exit {proc.poll()}):\n{out[-2000:]}")
            time.sleep(0.2)
        print("image-check: HEALTHCHECK reports healthy")
        if not any(data.iterdir()):
            fail("the server wrote nothing under /data (KANDJI_CONNECTOR_DATABASE_URL should point there)")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
