"""Take aiSFX's embedding tower out of the `aisfx` wheel into the safetensors file resound ships.

Run once by a developer, never by users (the output is committed as `indexer/starter/weights/
aisfx_tower.safetensors`):

    pip download --no-deps aisfx==0.1.2 -d /tmp/aisfx      # never `pip install` it: its pins
    python -m indexer.training.aisfx_convert /tmp/aisfx/aisfx-0.1.2-py2.py3-none-any.whl

The wheel is read as a zip; `aisfx/models/checkpoint.pth` is a torch pickle of (state_dict, dataset
table). Before anything is unpickled, every global the pickle names is listed with pickletools and the
file is refused unless they are all known; it is then loaded with `torch.load(weights_only=True)`
allowing only the three numpy types its dataset table needs (numpy int64 class counts), so no code from
the file runs. Only the `embedding_net.*` tensors are written (the 9 classification heads are not
used), with the licence and the source's sha256 in the safetensors metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickletools
import zipfile
from pathlib import Path

import numpy as np
import torch

from indexer.starter.aisfx import TOWER_FORMAT, TOWER_PATH, AisfxTower

CHECKPOINT_MEMBER = "aisfx/models/checkpoint.pth"
TOWER_PREFIX = "embedding_net."
# Every global the 0.1.2 checkpoint's pickle names (pickletools): torch's own tensor rebuilding, which
# weights_only allows already, and numpy scalars of the dataset table, which it does not.
EXPECTED_GLOBALS = frozenset(
    {
        "collections OrderedDict",
        "torch._utils _rebuild_tensor_v2",
        "torch FloatStorage",
        "torch LongStorage",
        "_codecs encode",
        "numpy dtype",
        "numpy.core.multiarray scalar",
    }
)
LICENCE = "CC-BY-4.0"
ATTRIBUTION = (
    "aiSFX pre-trained model (c) 2022 A. B. Ma and A. Lerch, CC BY 4.0: 'Representation Learning for the "
    "Automatic Indexing of Sound Effects Libraries', ISMIR 2022; converted to safetensors by resound "
    "(embedding tower only, classification heads dropped)"
)


def pickle_globals(checkpoint: bytes) -> set[str]:
    """The 'module name' globals that the checkpoint's data.pkl references, read without unpickling."""
    with zipfile.ZipFile(io.BytesIO(checkpoint)) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        data = archive.read(name)
    found: set[str] = set()
    strings: list[str] = []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST"):
            found.add(str(arg))
        elif op.name == "STACK_GLOBAL":
            found.add(f"{strings[-2]} {strings[-1]}")
        if isinstance(arg, str):
            strings.append(arg)
    return found


def _numpy_globals() -> list[object]:
    """The numpy types the dataset table's int64 scalars unpickle through (numpy 1.x and 2.x names)."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import scalar
    return [scalar, np.dtype, np.dtypes.Int64DType]


def load_checkpoint(checkpoint: bytes) -> tuple[dict[str, torch.Tensor], dict[str, tuple[int, int]]]:
    """(state_dict, dataset table) of the wheel's checkpoint.pth bytes, loaded with weights_only=True.

    Raises ValueError when the pickle names a global outside EXPECTED_GLOBALS.
    """
    unexpected = pickle_globals(checkpoint) - EXPECTED_GLOBALS
    if unexpected:
        raise ValueError(f"{CHECKPOINT_MEMBER}: pickle references unexpected globals {sorted(unexpected)}")
    with torch.serialization.safe_globals(_numpy_globals()):
        state, datasets = torch.load(io.BytesIO(checkpoint), map_location="cpu", weights_only=True)
    return dict(state), {str(k): (int(v[0]), int(v[1])) for k, v in datasets.items()}


def tower_tensors(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The embedding tower's tensors without their prefix, floats cast to `dtype`; checked against AisfxTower."""
    tensors = {
        key[len(TOWER_PREFIX) :]: (v.to(dtype) if v.is_floating_point() else v).contiguous()
        for key, v in state.items()
        if key.startswith(TOWER_PREFIX)
    }
    expected = set(AisfxTower().state_dict())
    if set(tensors) != expected:
        raise ValueError(f"tower tensors differ from AisfxTower: {sorted(set(tensors) ^ expected)[:5]}")
    return tensors


def convert(wheel: Path, out: Path = TOWER_PATH, dtype: torch.dtype = torch.float32) -> Path:
    """Write the tower of `wheel`'s checkpoint to `out` as safetensors; returns `out`."""
    from safetensors.torch import save_file

    with zipfile.ZipFile(wheel) as archive:
        checkpoint = archive.read(CHECKPOINT_MEMBER)
    state, datasets = load_checkpoint(checkpoint)
    metadata = {
        "format": TOWER_FORMAT,
        "source": f"{Path(wheel).name}:{CHECKPOINT_MEMBER}",
        "source_sha256": hashlib.sha256(checkpoint).hexdigest(),
        "training_datasets": ",".join(f"{name}:{classes}" for name, (_, classes) in datasets.items()),
        "licence": LICENCE,
        "attribution": ATTRIBUTION,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tower_tensors(state, dtype), str(out), metadata=metadata)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="the downloaded aisfx-0.1.2 wheel")
    parser.add_argument("--out", type=Path, default=TOWER_PATH)
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    args = parser.parse_args()
    path = convert(args.wheel, args.out, getattr(torch, args.dtype))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
