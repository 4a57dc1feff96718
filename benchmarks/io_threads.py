"""Do decode + PNG-encode lanes run in parallel in threads, or do they need processes? (images/s per pool)

One unit of work is what a folder run does per image outside the model: decode a 512x512 JPEG
(segcli.imageio), encode a palettized label PNG and an RGB overlay-sized PNG (segcli.outputs.png,
zlib level 1) after a numpy blend. PIL's decoder, zlib and numpy release the GIL, so threads can
overlap; a process pool avoids the GIL but pickles every result back.

    python benchmarks/io_threads.py            # prints images/s for 1 thread, 2 threads, 2 processes
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
from PIL import Image

from segcli.imageio import load_image_bytes
from segcli.outputs.png import encode_png

_rng = np.random.default_rng(0)
_COARSE = _rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
_IMAGE = np.asarray(Image.fromarray(_COARSE).resize((512, 512), Image.BILINEAR))
_buffer = io.BytesIO()
Image.fromarray(_IMAGE).save(_buffer, format="JPEG", quality=90)
JPEG = _buffer.getvalue()
LABELS = (np.asarray(Image.fromarray(_COARSE[..., 0]).resize((512, 512), Image.NEAREST)) // 13).astype(np.uint8)


def work(_: int) -> int:
    rgb = load_image_bytes(JPEG, "x.jpg").rgb
    encode_png(LABELS, palette=list(range(256)) * 3)
    encode_png((rgb.astype(np.uint16) * 3 // 4).astype(np.uint8))
    return 1


def main(count: int = 96) -> None:
    for kind, workers in (("thread", 1), ("thread", 2), ("process", 2)):
        pool = (ThreadPoolExecutor if kind == "thread" else ProcessPoolExecutor)(workers)
        list(pool.map(work, range(4)))  # warm-up (processes start, imports)
        started = time.perf_counter()
        list(pool.map(work, range(count)))
        seconds = time.perf_counter() - started
        pool.shutdown()
        print(f"{kind} x{workers}: {count / seconds:.1f} images/s", flush=True)


if __name__ == "__main__":
    main()
