"""`fusiondesk train` and `fusiondesk heads`: teach a head on your own labelled folders, list and share heads."""

from __future__ import annotations

import json
import sys
import time


def add_commands(command) -> None:
    p = command("train", cmd_train, "teach a head on your own examples: DATA_DIR has one sub-folder per class")
    p.add_argument("data_dir", metavar="DATA_DIR", help="a folder with one sub-folder of examples per class")
    p.add_argument("--name", required=True, help="the head's name (use it with `classify --head NAME`)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--replace", action="store_true", help="replace a saved head with the same name")
    p.add_argument("--json", action="store_true", help="print the training report as JSON")

    p = command("heads", cmd_heads, "list your trained heads; export or import one as a single file")
    sub = p.add_subparsers(dest="heads_command", metavar="ACTION")
    e = sub.add_parser("export", help="write a head to one file to share")
    e.add_argument("name", metavar="NAME")
    e.add_argument("file", metavar="FILE")
    i = sub.add_parser("import", help="add a head file made on another machine")
    i.add_argument("file", metavar="FILE")
    i.add_argument("--name", help="save it under this name (default: the name it was trained with)")
    i.add_argument("--replace", action="store_true", help="replace a head with the same name")
    r = sub.add_parser("remove", help="delete a head")
    r.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true")


class _ProgressLine:
    """One self-rewriting line on a terminal; plain lines, at most one a second, when piped."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        if self.tty:
            filled = int(fraction * 30)
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%} {message[:60]:60}")
            self.stream.flush()
        elif now - self.last >= 1.0 or fraction >= 1.0:
            self.stream.write(f"{fraction:4.0%} {message}\n")
            self.last = now

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")


def cmd_train(args) -> int:
    from desktop.cli import EXIT_OK, _runtime
    from engine.errors import FusionDeskError
    from engine.teach import head_path, train_head

    # Checked before the minutes of training, not after: a head someone trained is never replaced by accident.
    if head_path(args.name).exists() and not args.replace:
        raise FusionDeskError(f"a head named {args.name!r} already exists ({head_path(args.name)}): "
                              "choose another --name, or add --replace to train it again")
    runtime = _runtime(args)
    progress = _ProgressLine()
    try:
        report = train_head(args.data_dir, args.name, folds=args.folds, runtime=runtime, progress=progress)
    finally:
        progress.done()
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    for item in report.skipped:
        print(f"skipped {item['file']}: {item['error']}", file=sys.stderr)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    total = sum(report.counts.values())
    print(f"head {report.name!r}: {len(report.classes)} classes, {total} examples "
          f"({', '.join(f'{c} {n}' for c, n in report.counts.items())})")
    print(f"{report.folds}-fold cross-validation:")
    for candidate in report.candidates:
        mark = "  <- chosen" if candidate["model"] == report.chosen else ""
        print(f"  {candidate['model']:20} accuracy {candidate['accuracy']:6.1%}  log-loss {candidate['log_loss']:.3f}"
              f"  ({candidate['seconds']:.1f}s){mark}")
    print(f"chosen: {report.chosen} (cross-validated accuracy {report.accuracy:.1%})")
    print("confusion matrix (rows: true class, columns: predicted):")
    print(format_confusion(report.classes, report.confusion))
    print(f"saved {report.path}  ({report.seconds['total']:.1f}s)")
    return EXIT_OK


def format_confusion(classes: list[str], matrix: list[list[int]]) -> str:
    width = max(6, *(len(c) for c in classes)) + 1
    cell = max(5, *(len(c) for c in classes)) + 1
    lines = [" " * width + "".join(f"{c:>{cell}}" for c in classes)]
    for name, row in zip(classes, matrix):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)


def cmd_heads(args) -> int:
    from desktop.cli import EXIT_OK, _print_json, _runtime
    from engine import teach

    action = getattr(args, "heads_command", None)
    if action == "export":
        path = teach.export_head(args.name, args.file)
        print(f"wrote {path}")
        return EXIT_OK
    if action == "import":
        head = teach.import_head(args.file, name=args.name, runtime=_runtime(args), replace=args.replace)
        print(f"imported head {head.name!r} ({', '.join(head.classes)}) into {head.path}")
        return EXIT_OK
    if action == "remove":
        teach.remove_head(args.name)
        print(f"removed head {args.name!r}")
        return EXIT_OK
    heads = teach.list_heads()
    if args.json:
        _print_json([head.summary() for head in heads])
        return EXIT_OK
    if not heads:
        print(f"no heads yet in {teach.heads_dir()}; make one with `fusiondesk train DATA_DIR --name NAME`")
        return EXIT_OK
    for head in heads:
        info = head.summary()
        accuracy = f"{info['cv_accuracy']:.0%}" if info["cv_accuracy"] is not None else "?"
        print(f"{head.name:24} {info['model'] or '?':20} cv {accuracy:>4}  {info['examples']:4} examples  "
              f"[{', '.join(info['blocks'])}]  classes: {', '.join(head.classes)}")
    return EXIT_OK
