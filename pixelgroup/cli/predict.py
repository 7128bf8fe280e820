"""``pixelgroup predict``: instances of image files with a trained checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from pixelgroup.cli import UserError, add_overrides_argument

EPILOG = """examples:
  pixelgroup predict --checkpoint runs/demo/checkpoint.pt img1.png img2.png -o preds/
  pixelgroup predict --checkpoint runs/demo/checkpoint.pt photos/*.jpg -o preds/ \\
      --set grouping.num_iters=20

For instance models, per image STEM: STEM_labels.png (16-bit instance ids, 0 = background),
STEM_overlay.png (the instances over the image) and STEM.json (COCO-style results with RLE
masks and scores). A voc_instance checkpoint also captions the overlay with the VOC class
names and gives each JSON record a "category_id" 1..20 (`pixelgroup eval-instances` reads it).
A boundary-task checkpoint instead writes 16-bit boundary maps
OUTPUT/raw/STEM.png and OUTPUT/nms/STEM.png (thinned), ready for `pixelgroup eval-boundaries`.
Every image is read and checked before anything is written."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict instances of images (label PNG, overlay PNG, COCO JSON)",
        description="Group the pixels of each image into instances with a trained checkpoint.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt from train")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    add_overrides_argument(
        p, "override a stored config value, e.g. grouping.bandwidth=0.2 (repeatable)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pixelgroup.data.io import read_image
    from pixelgroup.engine import get_task, load_model
    from pixelgroup.engine.checkpoint import override_config

    stems = [p.stem for p in args.images]
    if len(set(stems)) != len(stems):
        raise UserError("two images share a file name stem; their outputs would collide")
    model, cfg, _ = load_model(args.checkpoint)
    cfg = override_config(cfg, args.overrides)
    write = getattr(get_task(cfg.task), "write_prediction", None)
    if write is None:
        raise UserError(f"the {cfg.task!r} task of this checkpoint has no predict step")
    channels = getattr(model, "in_channels", 3)
    images = [read_image(p, channels) for p in args.images]  # all checked before any output
    for stem, image in tqdm(list(zip(stems, images, strict=True)), disable=args.quiet):
        write(model, cfg, image, args.output, stem)
    print(f"predictions: {args.output} ({len(images)} image(s))")
    return 0
