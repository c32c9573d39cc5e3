"""N generated invocations of every `indexer` and `search` command, drawn from each command's own options
(click's command tree: the same parameters `--help` lists), with random flags, values and files (good
audio, broken files, names that are not UTF-8 or hold newlines, missing paths, text and binary files).

A `search serve` runs on the index the whole time, so the commands that ask it (query, similar, classify)
are answered through it as often as not. Prints the counts the error contract (docs/errors.md) says must be
0: tracebacks (or "internal error" lines), 5xx answers of the server, hangs (no answer within --timeout
seconds), and wrong exit statuses (not 0/1/2/3, or a failure without its one "Error:" line).

Most invocations run in-process through click's CliRunner (seconds instead of a Python start each); every
--subprocess-every-th runs as a real process, so real stdout/stderr encodings and exits are sampled too.
Commands that cannot end by themselves or reach out (serve, watch, models download/remove, prompts
generate, train, demo-corpus, --ray) are left out; so is nothing else.

Run: PYTHONPATH=. nice python bench/hostile_cli.py [-n 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import click
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer.cli import main as indexer_cli
from search.cli import main as search_cli
from tests import helpers
from tests.hostile_text import SCRIPTS, SPECIAL

SKIPPED = {"indexer serve", "indexer watch", "indexer train", "indexer demo-corpus", "indexer models download",
           "indexer models remove", "search serve", "search prompts generate"}
SKIPPED_OPTIONS = {"--ray", "--ray-actors", "--ray-gpus-per-actor", "--ray-block-files"}
ALLOWED = {0, 1, 2, 3}
# Option values that mean something to resound, beside the random ones.
NAMED_VALUES = {
    "--model": ["starter", "auto", "630k-audioset-best", "nonsense", "/no/such.pt", "README.md"],
    "--vision-model": ["ViT-B-32/laion2b_s34b_b79k", "nonsense", "x:/no/such"],
    "--db": ["sqlite:///{sandbox}/bad.sqlite", "sqlite:////missing/dir/x.sqlite", "bogus://x",
             "postgresql://nobody@127.0.0.1:1/x", "sqlite:///{sandbox}/other.sqlite", "{sandbox}"],
    "--index-type": ["garbage", "PQ7", "IDMap2,Flat", "IVF4,Flat", "IDMap2,HNSW32,Flat", "Flat", "auto", ""],
    "--device": ["cpu", "auto", "cuda", "cuda:7", "tpu", ""],
    "--label-set": ["starter", "esc50", "urbansound8k", "../../etc/passwd", "nope"],
    "--tag": ["title=x", "genre=日本", "bogus=1", "=", "title"],
    "--modified-after": ["2024-05-01", "2024-13-45", "1714521600", "yesterday", "nan"],
    "--modified-before": ["2024-05-01T12:00", "0", "-1e300", "inf"],
    "--glob": ["*.wav", "[", "**/*", "/abs/*", "\n"],
    "--ext": ["wav", "flac", ".ogg", "", "日本"],
    "--format": ["parquet", "npz", "csv"],
    "--llm-url": ["http://127.0.0.1:1/v1"],
}


@dataclass
class Sandbox:
    """Files and folders the invocations draw their paths from."""

    root: Path
    corpus: Path
    index: Path
    files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)


def make_sandbox(root: Path) -> Sandbox:
    corpus, index = helpers.starter_index(root)
    odd = root / "odd"
    odd.mkdir()
    tone = (corpus / "a440.wav").read_bytes()
    files = [corpus / "a440.wav", corpus / "sweep.flac", corpus / "noise.ogg"]
    for name in (b"caf\xe9.wav", b"new\nline.wav", "日本語 ünï.wav".encode(), b"-dash.wav", b"\x1b[31mred.wav"):
        path = odd / os.fsdecode(name)
        path.write_bytes(tone)
        files.append(path)
    broken = root / "broken"
    broken.mkdir()
    (broken / "empty.wav").write_bytes(b"")
    (broken / "text.wav").write_text("not audio\n" * 30)
    (broken / "truncated.ogg").write_bytes((corpus / "noise.ogg").read_bytes()[:300])
    (broken / "binary.bin").write_bytes(bytes(range(256)) * 8)
    files += sorted(broken.iterdir())
    texts = root / "texts"
    texts.mkdir()
    (texts / "labels.txt").write_text("dog\ncat\nrain\n日本語\n")
    (texts / "dup.txt").write_text("dog\ndog\n")
    (texts / "empty.txt").write_text("")
    (texts / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (texts / "scripts.txt").write_text("\n".join(SCRIPTS) + "\n")
    (texts / "labels.csv").write_text("label,description\ndog,a dog barking\n")
    (texts / "captions.csv").write_text("audio,caption\na440.wav,a tone\n")
    (texts / "split.json").write_text('{"seen": ["a"], "unseen": ["b"]}')
    (root / "bad.sqlite").write_text("not a database\n" * 50)
    files += sorted(texts.iterdir()) + [root / "bad.sqlite", ROOT / "README.md"]
    (root / "empty-dir").mkdir()
    # Not "/": `indexer build /` is a legitimate hours-long job, not a hang.
    folders = [corpus, odd, broken, texts, root / "missing", root / "empty-dir", root / "out-dir"]
    return Sandbox(root, corpus, index, files, folders)


def leaf_commands() -> list[tuple[str, click.Group, list[str], click.Command]]:
    """(name, top-level group, argv prefix, command) for every command both CLIs have, minus SKIPPED."""
    found = []

    def walk(group: click.Group, top: click.Group, prefix: list[str], label: str) -> None:
        for name, command in sorted(group.commands.items()):
            path = [*prefix, name]
            if isinstance(command, click.Group):
                walk(command, top, path, f"{label} {name}")
            elif f"{label} {name}" not in SKIPPED:
                found.append((f"{label} {name}", top, path, command))

    walk(indexer_cli, indexer_cli, [], "indexer")
    walk(search_cli, search_cli, [], "search")
    return found


def hostile_string(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.3:
        return rng.choice(SCRIPTS)
    if kind < 0.5:
        return "".join(rng.choice(SPECIAL) for _ in range(rng.randint(1, 5)))
    if kind < 0.6:
        return rng.choice(SCRIPTS) * rng.randint(50, 300)  # up to a few thousand characters
    if kind < 0.7:
        return os.fsdecode(bytes(rng.randint(0x80, 0xff) for _ in range(3)))  # lone surrogates, as argv has them
    text = "".join(chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x2fff), rng.randint(0x3000, 0xffff)]))
                   for _ in range(rng.randint(0, 20)))
    # argv holds lone surrogates only as escapes of bytes (\udc80-\udcff); any other cannot reach a process.
    return "".join("\ufffd" if "\ud800" <= c <= "\udfff" and not "\udc80" <= c <= "\udcff" else c for c in text)


def value_for(param: click.Parameter, rng: random.Random, box: Sandbox) -> str:
    name = param.opts[0] if param.opts else ""
    kind = param.type
    if name in NAMED_VALUES and rng.random() < 0.8:
        return rng.choice(NAMED_VALUES[name]).format(sandbox=box.root)
    if name in ("--index",) and rng.random() < 0.7:
        return str(rng.choice([box.index, box.index, box.root / f"new-{rng.randint(0, 5)}", box.corpus]))
    if name in ("--out", "--cache-dir", "--metrics") or "out" in param.name:
        return str(box.root / "out" / rng.choice(["o.parquet", "o.npz", "x.json", "dir", "o.csv", "日本.npz"]))
    if isinstance(kind, click.Path):
        pool = box.folders if (not kind.file_okay and kind.dir_okay) else box.files + box.folders
        return str(rng.choice(pool))
    if isinstance(kind, click.Choice):
        return rng.choice(list(kind.choices)) if rng.random() < 0.85 else hostile_string(rng)
    if isinstance(kind, (click.IntRange, type(click.INT))) or kind is click.INT:
        return str(rng.choice([0, 1, 2, 3, 5, 10, -1, 10**9, 2**63]) if rng.random() < 0.85 else hostile_string(rng))
    if isinstance(kind, (click.FloatRange, type(click.FLOAT))) or kind is click.FLOAT:
        return rng.choice(["0", "0.5", "1", "2.5", "-1", "1e308", "nan", "inf", "1e-9", "x"])
    return hostile_string(rng)


def invocation(command: click.Command, rng: random.Random, box: Sandbox) -> list[str]:
    argv: list[str] = []
    for param in command.params:
        if isinstance(param, click.Argument):
            count = rng.randint(1, 3) if param.nargs == -1 else max(param.nargs, 1)
            if rng.random() < 0.05:
                continue  # a missing argument: click's usage error
            argv += [value_for(param, rng, box) for _ in range(count)]
        elif (isinstance(param, click.Option) and param.opts[0] not in SKIPPED_OPTIONS and param.name != "help"
              and (rng.random() < (0.6 if param.required else 0.3) or (param.required and rng.random() < 0.9))):
            if param.is_flag:
                argv.append(param.opts[0])
            else:
                argv += [param.opts[0], value_for(param, rng, box)]
    if rng.random() < 0.03:
        argv.append(f"--{hostile_string(rng)[:10]}")  # an option nobody has
    return argv


class Hang(BaseException):
    """An invocation still running at the deadline (BaseException: no `except Exception` swallows it)."""


def _alarm(signum: int, frame: object) -> None:
    raise Hang()


@dataclass
class Outcome:
    traceback: bool
    hang: bool
    wrong_status: bool
    status: int | None
    text: str


def judge(status: int | None, stdout: str, stderr: str, hang: bool) -> Outcome:
    text = stdout + stderr
    traceback = "Traceback (most recent call last)" in text or "internal error" in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    wrong = not hang and (status not in ALLOWED or (status in (1, 2) and len(errors) != 1))
    return Outcome(traceback, hang, wrong, status, text[-600:])


def run_in_process(top: click.Group, argv: list[str], timeout: int) -> Outcome:
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        result = CliRunner().invoke(top, argv, catch_exceptions=True)
    except Hang:
        # Interrupted anywhere (holding a lock, perhaps): the verdict is a real process's.
        signal.alarm(0)
        return run_subprocess(top, argv, 2 * timeout, {**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        signal.alarm(0)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback as tb

        stderr += "".join(tb.format_exception(result.exception))
    return judge(result.exit_code, result.stdout, stderr, False)


def run_subprocess(top: click.Group, argv: list[str], timeout: int, env: dict[str, str]) -> Outcome:
    module = "indexer.cli" if top is indexer_cli else "search.cli"
    try:
        done = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return judge(None, "", "", True)
    return judge(done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"), False)


@contextlib.contextmanager
def serving(index: Path, log: Path, env: dict[str, str]):  # type: ignore[no-untyped-def]
    """`search serve` on the index, announced for the commands to find; yields its log file."""
    from search import remote

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "search.cli", "serve", "--index", str(index), "--port",
                                    str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while remote.read_record(index) is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
            if process.poll() is None:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="invocations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=120, help="seconds an invocation may take")
    parser.add_argument("--subprocess-every", type=int, default=40, help="every k-th invocation as a process")
    parser.add_argument("--show", type=int, default=5, help="examples of each kind of failure to print")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    commands = leaf_commands()
    work = Path(tempfile.mkdtemp(prefix="resound-hostile-cli-"))
    logs = work / "tracebacks"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "RESOUND_LOG_DIR": str(logs),
           "RESOUND_DB": ""}
    os.environ.update({"HF_HUB_OFFLINE": "1", "RESOUND_LOG_DIR": str(logs), "RESOUND_DB": ""})
    started = time.perf_counter()
    box = make_sandbox(work)
    counts: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    with serving(box.index, work / "serve.log", env):
        cwd = os.getcwd()
        os.chdir(work)  # relative paths (./resound_index, outputs) land in the sandbox
        try:
            for i in range(args.n):
                name, top, prefix, command = commands[i % len(commands)] if i < len(commands) else rng.choice(commands)
                argv = [*prefix, *invocation(command, rng, box)]
                # A process's arguments cannot hold a NUL byte (the OS refuses them before resound runs):
                # such an invocation runs in-process, where click receives it as typed.
                as_process = (args.subprocess_every and i % args.subprocess_every == args.subprocess_every - 1
                              and not any("\0" in a for a in argv))
                outcome = (run_subprocess(top, argv, args.timeout, env) if as_process
                           else run_in_process(top, argv, args.timeout))
                statuses[f"{name}: {outcome.status}"] += 1
                for kind in ("traceback", "hang", "wrong_status"):
                    if getattr(outcome, kind):
                        counts[kind] += 1
                        examples.setdefault(kind, []).append(f"{name} {argv!r} -> {outcome.status}: {outcome.text}")
                counts["processes" if as_process else "in-process"] += 1
                if (i + 1) % 100 == 0:
                    print(f"  {i + 1}/{args.n} in {time.perf_counter() - started:.0f} s: {dict(counts)}",
                          file=sys.stderr, flush=True)
        finally:
            os.chdir(cwd)
    log = (work / "serve.log").read_text(errors="replace")
    server_errors = sum(1 for line in log.splitlines() if '" 5' in line and "HTTP/1.1" in line)
    seconds = time.perf_counter() - started
    print(f"{args.n} invocations of {len(commands)} commands (seed {args.seed}; {counts['in-process']} in-process, "
          f"{counts['processes']} as processes) in {seconds:.0f} s")
    print("| tracebacks | 5xx | hangs | wrong exit statuses |")
    print("|---:|---:|---:|---:|")
    print(f"| {counts['traceback']} | {server_errors} | {counts['hang']} | {counts['wrong_status']} |")
    by_status = Counter(s.rsplit(": ", 1)[1] for s in statuses.elements())
    print("exit statuses: " + ", ".join(f"{status}: {n}" for status, n in sorted(by_status.items())))
    for kind, found in examples.items():
        for example in found[: args.show]:
            print(f"{kind}: {example}")
    if server_errors:
        print("\n".join(line for line in log.splitlines() if '" 5' in line)[:3000])
    if logs.is_dir():
        for path in sorted(logs.iterdir())[: args.show]:
            print(f"--- {path}\n{path.read_text()[-1500:]}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
