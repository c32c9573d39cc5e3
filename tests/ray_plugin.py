"""A resound plugin for the Ray build tests: `*.raytones` checkpoints load the ToneEncoder, which can be told
to misbehave from a control file named in the checkpoint (the checkpoint itself, hence the model's identity
and its shards' names, stays the same). The checkpoint holds {"control": path}; the control file, read at
every batch, holds {"shards": the shard directory, and at most one of}

    "kill_at_shards": n, "marker": path    SIGKILL the process at its first batch once n shards exist and
                                           `marker` does not (it is created first: one kill in all)
    "hang_at_shards": n                    block forever once n shards exist (a driver is to be killed)
    "crash_at_shards": n                   SIGKILL the process at every batch once n shards exist
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from indexer.encoders.resolver import register_family
from tests.helpers import ToneEncoder


class ControlledToneEncoder(ToneEncoder):
    def __init__(self, model_id: str, checkpoint: Path):
        super().__init__(model_id, checkpoint)
        self.control = Path(json.loads(Path(checkpoint).read_text())["control"])

    def embed_audio(self, windows):  # type: ignore[no-untyped-def]
        control = json.loads(self.control.read_text()) if self.control.is_file() else {}
        shards = Path(control.get("shards", "/nonexistent"))
        done = len(list(shards.glob("*.parquet"))) if shards.is_dir() else 0
        if "kill_at_shards" in control and done >= control["kill_at_shards"]:
            try:
                Path(control["marker"]).touch(exist_ok=False)
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        if "crash_at_shards" in control and done >= control["crash_at_shards"]:
            os.kill(os.getpid(), signal.SIGKILL)
        if "hang_at_shards" in control and done >= control["hang_at_shards"]:
            while True:
                time.sleep(1)
        return super().embed_audio(windows)


register_family("test_ray_tones", lambda checkpoint, model_id, *_: ControlledToneEncoder(model_id, checkpoint),
                (".raytones",))
