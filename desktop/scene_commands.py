"""Scene commands: `detect` (objects with boxes, COCO classes) and `segment` (person masks, cutouts, blur).

Registered by desktop.cli through COMMAND_MODULES; the engine work is engine.scene.
"""

from __future__ import annotations

import sys



def add_commands(command) -> None:
    p = command("detect", cmd_detect, "find objects in images: COCO class names with boxes [x1, y1, x2, y2] in pixels")
    p.add_argument("files", nargs="+", metavar="IMAGE")
    p.add_argument("--threshold", type=float, default=None, metavar="SCORE",
                   help="lowest score to report (default 0.35, from the model bundle)")
    p.add_argument("--draw", metavar="OUT_DIR", help="also write each image with its boxes drawn, as OUT_DIR/NAME.boxes.png")
    p.add_argument("--json", action="store_true", help='print a JSON array: {"file", "objects": [{label, score, box}]}')

    p = command("segment", cmd_segment, "separate people from the background: a mask, a transparent cutout or a blur")
    p.add_argument("files", nargs="+", metavar="IMAGE")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the pictures (DIR/NAME.MODE.png)")
    p.add_argument("--mode", choices=["mask", "cutout", "blur"], default="mask",
                   help="mask: white = person (default); cutout: the person on transparency; blur: blurred background")
    p.add_argument("--json", action="store_true")


def _report(records, args, describe) -> int:
    from desktop.cli import report

    return report(records, args, describe)


def cmd_detect(args) -> int:
    from desktop.cli import _runtime
    from engine.scene import DETECTOR_ID, detect_files

    runtime = _runtime(args)
    threshold = args.threshold
    if threshold is None:
        threshold = float(runtime.bundle.entry(DETECTOR_ID).preprocess.get("score_threshold", 0.35))
    records = detect_files(args.files, score_threshold=threshold, draw_dir=args.draw, runtime=runtime)

    def describe(record) -> None:
        print(f"{record['file']} ({len(record['objects'])} objects)")
        for item in record["objects"]:
            x1, y1, x2, y2 = item["box"]
            print(f"  {item['score']:5.2f}  {item['label']:16} [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
        if not record["objects"]:
            print("  (nothing recognisable among the 80 COCO object classes)")
        if "drawn" in record:
            print(f"  wrote {record['drawn']}", file=sys.stderr)

    return _report(records, args, describe)


def cmd_segment(args) -> int:
    from desktop.cli import _runtime
    from engine.scene import segment_files

    records = segment_files(args.files, args.out, mode=args.mode, runtime=_runtime(args))

    def describe(record) -> None:
        if record["output"] is None:
            print(f"{record['file']}: no person found (nothing written)")
        else:
            print(f"{record['file']}: {record['person_fraction']:.1%} person -> {record['output']}")

    return _report(records, args, describe)
