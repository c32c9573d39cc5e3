"""Uploads whose container headers lie: a Matroska (FLAC) and an MP4 (AAC) file that say they last 7 s and
hold 3 hours. Measures what refusing them costs a running `search serve` (default limits: 120 s per clip):
the status, the seconds to answer and the server's peak RSS growth (VmHWM); and, beside it, what decoding
such a file whole costs when the header is trusted (decode_audio without limits, in a fresh process).

Run: PYTHONPATH=. python bench/hostile_uploads.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.lying_media import write_lying
from tests.service_support import make_tone_index, tone_environment

REAL_SECONDS = 3 * 3600
CLAIMED_SECONDS = 7


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unlimited_decode(path: Path) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of decode_audio(path, 16000) with no limits, in a fresh process."""
    code = ("import resource, sys, time; from indexer.media.decode import decode_audio; t = time.perf_counter(); "
            "d = decode_audio(sys.argv[1], 16000); "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, d.duration)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="resound-hostile-") as tmp:
        root = Path(tmp)
        files = {s: write_lying(root / f"liar{s}", CLAIMED_SECONDS, REAL_SECONDS, tone_seconds=4) for s in (".mkv", ".mp4")}
        with tone_environment(root / "cache"):
            tones = make_tone_index(root / "tones")
            port = _free_port()
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
            server = subprocess.Popen([sys.executable, "-m", "search.cli", "serve", "--index", str(tones.index),
                                       "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            try:
                url = f"http://127.0.0.1:{port}"
                with httpx.Client(base_url=url, timeout=600) as client:
                    for _ in range(600):
                        try:
                            if client.get("/api/health").status_code == 200:
                                break
                        except httpx.TransportError:
                            time.sleep(0.2)
                    client.get("/api/query", params={"q": "a 440 tone"})  # warm
                    print(f"files: {CLAIMED_SECONDS} s claimed, {REAL_SECONDS} s held (8 kHz mono); server limit 120 s")
                    print("| file | size | answer | seconds | server peak RSS growth | decoded whole without limits: seconds, peak RSS |")
                    print("|---|---:|---|---:|---:|---:|")
                    for suffix, path in files.items():
                        before = _kib(server.pid, "VmHWM")
                        started = time.perf_counter()
                        response = client.post("/api/similar", files={"file": (path.name, path.read_bytes())})
                        seconds = time.perf_counter() - started
                        growth = (_kib(server.pid, "VmHWM") - before) / 1024
                        whole_s, whole_mib = _unlimited_decode(path)
                        print(f"| {suffix} | {path.stat().st_size / 2**20:.1f} MB | {response.status_code} "
                              f"{response.json()['detail']} | {seconds:.2f} | {growth:.0f} MiB | "
                              f"{whole_s:.1f} s, {whole_mib:.0f} MiB |")
            finally:
                server.terminate()
                server.wait(30)


if __name__ == "__main__":
    main()
