"""`segcli data`: make datasets."""

from __future__ import annotations

import click

from segcli.cli.options import overwrite_option, size_callback, size_limits_text, workers_option

MAX_SCENES = 1_000_000
MAX_SCENE_SIDE = 4096  # a scene is drawn in float arrays: about 100 bytes a pixel while it is made


@click.group("data")
def data() -> None:
    """Make datasets (procedural VOC-format scenes)."""


@data.command("synth")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--n", "count", type=click.IntRange(1, MAX_SCENES), default=200, show_default=True,
              help="Number of scenes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, n and size: same bytes.")
@click.option("--size", default="128x128", show_default=True, callback=size_callback(8, max_side=MAX_SCENE_SIDE),
              help=f"Scene size HxW ({size_limits_text(8, MAX_SCENE_SIDE)}).")
@click.option("--val-fraction", type=click.FloatRange(0.0, 1.0), default=0.2, show_default=True,
              help="Share of scenes in the val split (the last ones); 1.0 for a held-out test draw.")
@overwrite_option("Write into a folder that already holds a dataset.")
@workers_option(default=1, minimum=1, help="writing scenes (the same bytes as one).")
def synth(out_dir: str, count: int, seed: int, size: tuple[int, int], val_fraction: float, overwrite: bool,
          workers: int) -> None:
    """Procedural scenes: shapes told apart by outline and texture, VOC layout and palette."""
    from rich.console import Console

    from segcli.data.synth import write_synth_dataset

    summary = write_synth_dataset(out_dir, count, seed, size=size, val_fraction=val_fraction, overwrite=overwrite,
                                  workers=workers)
    Console().print(f"wrote {len(summary.train_ids)} train + {len(summary.val_ids)} val scenes "
                    f"({size[0]}x{size[1]}, {len(summary.classes)} classes) to {summary.out_dir}")
