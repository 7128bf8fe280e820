"""``pixelgroup predict``: instances of image files with a trained checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from pixelgroup.cli import (
    UserError,
    add_overrides_argument,
    add_threads_argument,
    add_tile_arguments,
    check_tile_arguments,
    device_from_overrides,
    override_checkpoint_config,
    set_threads,
)

EPILOG = """examples:
  pixelgroup predict --checkpoint runs/demo/checkpoint.pt img1.png img2.png -o preds/
  pixelgroup predict --checkpoint runs/demo/checkpoint.pt photos/*.jpg -o preds/ \\
      --set grouping.num_iters=20
  pixelgroup predict --checkpoint runs/coco/checkpoint.pt big.jpg -o preds/ --max-size 2048
  pixelgroup predict --checkpoint runs/cells/checkpoint.pt slide.tif -o preds/ --tile 512
  pixelgroup predict --checkpoint runs/cells/checkpoint.pt slide.ome.zarr -o preds/ --lazy
  pixelgroup predict --checkpoint runs/coco/checkpoint.pt photos/*.jpg -o preds/ \\
      --set device=cuda --set grouping.background=semantic

For instance models, per image STEM: STEM_labels.png (16-bit instance ids, 0 = background),
STEM_overlay.png (the instances over the image) and STEM.json (COCO-style results with RLE
masks and scores), all at the image's size, plus OUTPUT/results.json with every image's
records (COCO results, image_id = file stem; pycocotools' COCO.loadRes reads it); predicting
more images into the same folder merges them into results.json (an image predicted again, with
--overwrite, has its records replaced), so it lists every image the folder holds. Files of an
image's earlier prediction (or a user's files of those names, e.g. masks called
STEM_labels.png) are never replaced without --overwrite: predict stops before any work. An image
whose long side exceeds --max-size (default 1024; 0: no limit) is downscaled for the model
and its labels are brought back to the image's size, so a huge photo costs bounded time and
memory (the downscaling applies to instance checkpoints). A model trained on crops at a
scale of the images (data.options.crop; the native scale, e.g. --config cells, or the centre
of data.options.scale) sees every image at that scale: its default is no limit, and an
explicit --max-size that shrinks an image further is warned about.
An image the model sees larger than 1024 px on a side goes through it in tiles (--tile, default
512 px, each seen with --halo px of context on every side, default 64, 448 for the dense
network, which sees images up to 1,408 px, a tile's window, whole); an image over 1024 px a
side is grouped in blocks of 512 px whatever the tiles,
its instances joined across blocks in embedding space, so the tiles never change the labels
(docs/large_images.md).
Over 65,535 instances, the labels are written as STEM_labels.tif (32-bit ids).
A TIFF or zarr / OME-Zarr image over 2048 x 2048 px that the model sees at its size (--lazy:
any) is never held whole: it is read window by window, its labels are written block by block
to STEM_labels.tif, a tiled BigTIFF (16-bit ids, 32-bit past 65,535), their outlines to
STEM.geojson (polygons, QuPath's detections), their COCO results to STEM.json and an overlay
at most 2048 px a side to STEM_overlay.png. A volume checkpoint (task volume,
docs/volumes.md) reads TIFF stacks and writes STEM_labels.tif (a 16-bit label stack, 32-bit
over 65,535 objects) and STEM_slices.png (three orthogonal slices). The model runs on the
CPU; --set device=cuda runs it on the GPU. A voc_instance checkpoint also captions the overlay
with the VOC class names and gives each JSON record a "category_id" 1..20
(`pixelgroup eval-instances` reads it).
A boundary-task checkpoint instead writes 16-bit boundary maps
OUTPUT/raw/STEM.png and OUTPUT/nms/STEM.png (thinned), ready for `pixelgroup eval-boundaries`;
a proposals checkpoint STEM.json (ranked proposals for `pixelgroup eval-proposals`); a semantic
checkpoint STEM_classes.png (class ids) and STEM_overlay.png.
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
    p.add_argument(
        "--max-size",
        type=int,
        default=None,
        metavar="N",
        help="longest image side the model sees; larger images are downscaled for the model, "
        "the outputs keep the image's size (default 1024, or 0 for a model trained on crops "
        "at a scale of the images, data.options.crop, which sees them at that scale; 0: no "
        "limit)",
    )
    add_tile_arguments(
        p,
        "run the model on tiles of N x N px (a multiple of 16) of an image larger than N on a "
        "side (default: 512 for images larger than 1024 and than a tile's window, 512 + 2 "
        "halo; 0: never tile)",
        "px of context around each tile, a multiple of 16 >= 16 (default: the model's, 64 for "
        "the toy network and the U-Net, 448 for the dense network: tiles then equal the whole "
        "image)",
    )
    p.add_argument(
        "--lazy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read a TIFF / zarr image window by window and write its labels tile by tile to "
        "STEM_labels.tif, a tiled BigTIFF, and outlines to STEM.geojson (default: images over "
        "2048 x 2048 px that the model sees at their size; --no-lazy: never)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing files of an image's prediction (STEM_labels.png, STEM.json, ...; "
        "without it, predict stops before any work)",
    )
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pixelgroup.cli.paths import check_writable_dir
    from pixelgroup.engine import load_model, predict_files
    from pixelgroup.tasks.predictions import read_results_records

    set_threads(args.threads)
    if args.max_size is not None and args.max_size < 0:
        raise UserError(f"--max-size must be >= 0 (0: no limit), got {args.max_size}")
    check_tile_arguments(args.tile, args.halo)
    check_writable_dir(args.output, "-o")
    read_results_records(args.output)  # one that cannot be merged: an error before any work
    model, cfg, _ = load_model(args.checkpoint)
    cfg = override_checkpoint_config(cfg, args.overrides, args.checkpoint)
    model = model.to(device_from_overrides(cfg.device, args.overrides))
    done = predict_files(
        model,
        cfg,
        args.images,
        args.output,
        progress=not args.quiet,
        max_size=args.max_size,
        tile=args.tile,
        halo=args.halo,
        lazy=args.lazy,
        overwrite=args.overwrite,
    )
    note = ""
    if done.resized:
        path, (h, w), (sh, sw) = done.resized[0]
        more = f" and {len(done.resized) - 1} more" if len(done.resized) > 1 else ""
        note = (
            f"; resized for the model: {path.name} {w}x{h} -> {sw}x{sh}{more}; outputs at the "
            "image size"
        )
    if done.tiled:
        note += f"; {len(done.tiled)} in tiles"
    if done.lazy:
        written = "STEM_labels.tif, STEM.geojson, STEM.json, STEM_overlay.png"
        note += f"; {len(done.lazy)} read by window: {written}"
    print(f"predictions: {args.output} ({len(args.images)} image(s){note})")
    return 0
