"""OCR quality benchmark (not a test): word spaces, the line filter and the text-presence gate of engine.ocr.

1. Word spaces and digit/letter fixes: documents of five kinds (tests/docs.py `document_set`, "heldout"
   split: other seeds, so other text, faces, sizes and turns than the "train" split the rules were tuned on),
   read four ways from the same recogniser output: as before (the characters as emitted, RapidOCR's text,
   rows on the image's axes), with the spaces restored, also with a turned page's rows levelled, and as
   read_text gives it (also digit/letter fixes and the line filter). Word error rate (WER, whitespace-split
   words, word-level edit distance over the whole page) and character error rate (CER, one space between
   words) against the rendered text, per kind and overall, and read_text's time per page.
2. Line filter: share of photos (random crops of scikit-image photographs, 0.3-6 Mpx, other crops than the
   tuning set) with any text left, before and after; share of real lines kept (document lines, and the lines
   of signs pasted into photos).
3. Text-presence gate: (a) its cost per picture (pictures reduced to long side 768 first, as a caller would),
   (b) documents of 0.5-3 Mpx and dense pages judged "page", (c) photos with a sign pasted in judged "regions"
   or "page", and the sign's lines read through the gate vs the ungated read, (d) plain photos judged
   "none" / "regions" / "page", and with any text left after gate and filter; plus read time with and
   without the gate.

4. The gate at several sizes (--sizes): cost, documents judged "page", photos with a sign (normal and small,
   faded ones) and plain photos in which it finds text.

    .venv/bin/python bench/bench_ocr.py [--per-kind 8] [--photos 200] [--signs 100] [--threads 2]
                                        [--skip spaces gate sizes] [--json out.json]

Prints markdown tables. Timings depend on the machine's load: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import ocr  # noqa: E402
from tests import docs  # noqa: E402

# Astronaut photographs show a mission patch and a name tag ("COLLINS ASHBY COLEMAN HAWLEY TOGNINI"):
# real text, a correct reading of which is not noise.
PATCH_WORDS = {"COLLINS", "ASHBY", "COLEMAN", "HAWLEY", "TOGNINI", "EILEEN"}


# ---------------------------------------------------------------- metrics

def _distance_row(a, b, free_start: bool) -> list[int]:
    """The last row of the edit-distance table of `a` against `b`: entry j is the distance of `a` to b[:j], or,
    with free_start, to the best piece of `b` that ends at j (a inside b)."""
    previous = [0] * (len(b) + 1) if free_start else list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous


def edit_distance(a, b) -> int:
    return _distance_row(a, b, free_start=False)[-1]


def infix_distance(needle, haystack) -> int:
    """The edit distance of `needle` to its best match anywhere inside `haystack` (free start and end)."""
    return min(_distance_row(needle, haystack, free_start=True))


def page_errors(truth_lines: list[str], text: str) -> tuple[int, int, int, int]:
    """(word errors, truth words, character errors, truth characters) of a page read as `text`."""
    truth_words, read_words = " ".join(truth_lines).split(), text.split()
    truth_chars, read_chars = " ".join(truth_words), " ".join(read_words)
    return (edit_distance(truth_words, read_words), len(truth_words),
            edit_distance(truth_chars, read_chars), len(truth_chars))


def line_matches(text: str, truth_lines: list[str], tolerance: float = 0.3) -> bool:
    """Whether a read line is (a piece of) one of the truth lines, spaces ignored, within `tolerance` CER."""
    read = text.replace(" ", "")
    for truth in truth_lines:
        if read and infix_distance(read, truth.replace(" ", "")) <= tolerance * len(read):
            return True
    return False


def truth_line_read(truth: str, lines: list[str], tolerance: float = 0.2) -> bool:
    """Whether a truth line was read: the read lines' text (spaces ignored) contains it within `tolerance`."""
    target = truth.replace(" ", "")
    read = "".join(line.replace(" ", "") for line in lines)
    if not read:
        return False
    return infix_distance(target, read) <= tolerance * len(target)


def is_patch_text(text: str) -> bool:
    """A reading (right, or one letter off) of a name on the astronaut's mission patch."""
    return any(edit_distance(text.upper(), word) <= 1 for word in PATCH_WORDS)


# ---------------------------------------------------------------- 1. spaces

def four_readings(image, runtime) -> dict[str, str]:
    """The page four ways from one recogniser pass: as the pipeline read it before this work (the characters
    as emitted, rows grouped on the image's axes), with the spaces restored, also with the rows of a turned
    page levelled, and as read_text gives it (also digit/letter fixes and the line filter).

    The first three follow read_text step by step with its decoders; the last is read_text itself."""
    settings = runtime.bundle.entry("ocr").preprocess
    bgr = ocr.to_bgr(image)
    boxes = ocr.detect(bgr, settings, runtime)
    crops, flipped = ocr.fix_upside_down([ocr.crop_box(bgr, box) for box in boxes], settings["cls"], runtime)
    turned = bgr.shape[:2] if sum(flipped) * 2 > len(flipped) else None
    levelled_rows = ocr.reading_rows(boxes, turned)
    minimum, ocr.ROW_LEVELLING_MIN_DEGREES = ocr.ROW_LEVELLING_MIN_DEGREES, math.inf  # rows as before: never levelled
    try:
        axis_rows = ocr.reading_rows(boxes, turned)
    finally:
        ocr.ROW_LEVELLING_MIN_DEGREES = minimum
    steps = ocr.recognition_steps(crops, settings["rec"], runtime)
    alphabet = ocr.characters(runtime)

    def page(rows: list[list[int]], restore: bool) -> str:
        lines = []
        for row in rows:
            pieces = []
            for index in row:
                best, probability, space = steps[index]
                text, score = ocr.spaced_text(best, probability, space, alphabet, restore_spaces=restore)
                if text.strip() and score >= settings["text_score"]:
                    pieces.append(text.strip())
            if pieces:
                lines.append(" ".join(pieces))
        return "\n".join(lines)

    return {"before": page(axis_rows, False), "spaces": page(axis_rows, True), "levelled": page(levelled_rows, True),
            "read_text": ocr.read_text(image, runtime=runtime).text}


def bench_spaces(runtime, per_kind: int, report: dict) -> None:
    documents = docs.document_set("heldout", per_kind=per_kind)
    totals: dict[str, dict[str, list[int]]] = {}
    fixes = {"changed": 0, "right": 0, "wrong": 0, "examples": []}
    for key, doc in documents.items():
        readings = four_readings(doc.image, runtime)
        kind = key.split("-")[0]
        for name, text in readings.items():
            for group in (kind, "all"):
                counts = totals.setdefault(group, {}).setdefault(name, [0, 0, 0, 0])
                for i, value in enumerate(page_errors(doc.lines, text)):
                    counts[i] += value
        # The digit/letter fixes, token by token (spaces restored in both).
        truth_words = set(" ".join(doc.lines).split())
        for before in readings["spaces"].split():
            after = ocr.fix_confusions(before)
            if after != before:
                fixes["changed"] += 1
                fixes["right"] += after in truth_words and before not in truth_words
                fixes["wrong"] += before in truth_words and after not in truth_words
                if len(fixes["examples"]) < 8:
                    fixes["examples"].append(f"{before} -> {after}")

    print(f"\n## 1. Word spaces: {len(documents)} held-out documents ({per_kind} per kind), errors against the rendered text\n")
    columns = (("before", "before"), ("spaces", "spaces restored"), ("levelled", "+ rows levelled"),
               ("read_text", "read_text"))
    print("| kind | words | " + " | ".join(f"WER {title}" for _, title in columns) + " | "
          + " | ".join(f"CER {title}" for _, title in columns) + " |")
    print("|---|---:|" + "---:|" * (2 * len(columns)))
    for group in [*docs.KINDS, "all"]:
        row = totals[group]
        wer = {name: row[name][0] / max(1, row[name][1]) for name in row}
        cer = {name: row[name][2] / max(1, row[name][3]) for name in row}
        print(f"| {group} | {row['before'][1]} | " + " | ".join(f"{wer[name]:.4f}" for name, _ in columns) + " | "
              + " | ".join(f"{cer[name]:.4f}" for name, _ in columns) + " |")
        report.setdefault("spaces", {})[group] = {"wer": wer, "cer": cer, "words": row["before"][1]}
    print("\nbefore: the recogniser's characters as emitted, rows grouped on the image's axes (the pipeline before "
          "this work); spaces restored: engine.ocr.spaced_text; rows levelled: engine.ocr.page_slope; read_text: "
          "also the digit/letter fixes and the line filter.")
    print(f"\nDigit/letter fixes: {fixes['changed']} tokens changed, {fixes['right']} made right, {fixes['wrong']} made wrong "
          f"({'; '.join(fixes['examples'])})")
    report["fixes"] = {k: v for k, v in fixes.items()}

    # Time per page: the rendered invoice, emitted text (keep_all + literal) vs read_text (spaces, fixes, filter).
    page = docs.documents()["invoice"].image
    timings = {}
    for name, kwargs in (("as emitted", {"literal": True}), ("read_text", {})):
        ocr.read_text(page, runtime=runtime, **kwargs)
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            ocr.read_text(page, runtime=runtime, **kwargs)
            runs.append(time.perf_counter() - started)
        timings[name] = min(runs) * 1000
    print(f"\nTime per page (the 6-line test invoice, best of 5): as emitted {timings['as emitted']:.0f} ms, "
          f"read_text {timings['read_text']:.0f} ms")
    report["page_ms"] = timings


# ---------------------------------------------------------------- 2 + 3. filter and gate

def reduced(image, side: int = 768):
    """What a caller gives the gate: the picture with its long side at most `side`."""
    from PIL import Image

    if max(image.size) <= side:
        return image
    scale = side / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR, reducing_gap=2.0)


def gate_documents(count: int) -> list:
    """Training-split documents enlarged or shrunk to 0.5-3 Mpx, plus dense pages of small print."""
    from PIL import Image

    pictures = []
    rng = np.random.default_rng(123)
    for doc in list(docs.document_set("train", per_kind=max(1, count // 5)).values())[:count]:
        megapixels = float(np.exp(rng.uniform(math.log(0.5), math.log(3.0))))
        scale = math.sqrt(megapixels * 1e6 / (doc.image.width * doc.image.height))
        pictures.append(doc.image.resize((round(doc.image.width * scale), round(doc.image.height * scale)), Image.BICUBIC))
    for seed in range(max(2, count // 4)):
        page_rng = np.random.default_rng([8, seed])
        lines: list[str] = []
        while len(lines) < int(page_rng.integers(25, 45)):
            lines += docs.generated_lines(docs.KINDS[int(page_rng.integers(5))], page_rng)
        pictures.append(docs.render(lines, font=docs.FONTS[int(page_rng.integers(4))], size=int(page_rng.integers(16, 26)),
                                    angle=float(page_rng.uniform(-3, 3)), seed=seed).image)
    return pictures


def gate_cost(runtime, pictures: list) -> dict[str, float]:
    """ms per picture of text_presence on reduced pictures: the whole list in one call, and one call each."""
    small = [reduced(p) for p in pictures]
    ocr.text_presence(small[:4], runtime=runtime)  # warm-up
    started = time.perf_counter()
    ocr.text_presence(small, runtime=runtime)
    batched = (time.perf_counter() - started) / len(small) * 1000
    started = time.perf_counter()
    for picture in small:
        ocr.text_presence([picture], runtime=runtime)
    single = (time.perf_counter() - started) / len(small) * 1000
    return {"batched_ms": batched, "single_ms": single, "pictures": len(small)}


def bench_filter_and_gate(runtime, photo_count: int, sign_count: int, per_kind: int, report: dict) -> None:
    # Other crops and signs than the ones the thresholds were tuned on (photo seed 0, sign seeds 7, 11, 21).
    photos = docs.photo_crops(photo_count, seed=1) + [docs.photo(name) for name in docs.PHOTOS]
    sign_photos = []
    for k, background in enumerate(docs.photo_crops(sign_count, seed=51)):
        sign_photos.append(docs.with_sign(background, 3000 + k, hard=k % 2 == 1))

    # (a) cost
    cost = gate_cost(runtime, photos[:60])
    # (d) plain photos: ungated read with and without the filter, gated read
    kinds = {"none": 0, "regions": 0, "page": 0}
    any_before = any_after = any_gated = patch_only = after_patch_only = 0
    rejected_reasons: dict[str, int] = {}
    ungated_s = gated_s = 0.0
    presences = ocr.text_presence([reduced(p) for p in photos], runtime=runtime)
    for picture, presence in zip(photos, presences):
        kinds[presence.kind] += 1
        started = time.perf_counter()
        full = ocr.read_text(picture, runtime=runtime)
        ungated_s += time.perf_counter() - started
        started = time.perf_counter()
        gated = ocr.read_text(picture, runtime=runtime, presence=presence)
        gated_s += time.perf_counter() - started
        any_before += bool(full.lines or full.rejected)
        any_after += bool(full.lines)
        after_patch_only += bool(full.lines) and all(is_patch_text(line.text) for line in full.lines)
        any_gated += bool(gated.lines)
        patch_only += bool(gated.lines) and all(is_patch_text(line.text) for line in gated.lines)
        for line in full.rejected:
            reason = line.reason.split(" 0.")[0]
            rejected_reasons[reason] = rejected_reasons.get(reason, 0) + 1
    n = len(photos)

    # (c) sign photos: kind, sign lines read through the gate vs ungated; real lines kept by the filter
    sign_kinds = {"none": 0, "regions": 0, "page": 0}
    sign_lines = {"normal": 0, "small": 0}
    gated_read = {"normal": 0, "small": 0}
    full_read = {"normal": 0, "small": 0}
    sign_found = {"normal": 0, "small": 0}
    real_lines = real_kept = 0
    sign_gated_s = sign_full_s = 0.0
    sign_presences = ocr.text_presence([reduced(p) for p, _ in sign_photos], runtime=runtime)
    for k, ((picture, truth), presence) in enumerate(zip(sign_photos, sign_presences)):
        size = "small" if k % 2 == 1 else "normal"
        sign_kinds[presence.kind] += 1
        sign_found[size] += presence.kind != "none"
        started = time.perf_counter()
        full = ocr.read_text(picture, runtime=runtime)
        sign_full_s += time.perf_counter() - started
        started = time.perf_counter()
        gated = ocr.read_text(picture, runtime=runtime, presence=presence)
        sign_gated_s += time.perf_counter() - started
        for line in truth:
            sign_lines[size] += 1
            full_read[size] += truth_line_read(line, [l.text for l in full.lines])
            gated_read[size] += truth_line_read(line, [l.text for l in gated.lines])
        everything = ocr.read_text(picture, runtime=runtime, keep_all=True)
        for line in everything.lines:
            if line_matches(line.text, truth):
                real_lines += 1
                real_kept += any(kept.text == line.text and kept.box == line.box for kept in full.lines)

    # (b) documents are pages; their real lines are kept
    pictures = gate_documents(40)
    doc_kinds = {"none": 0, "regions": 0, "page": 0}
    for presence in ocr.text_presence([reduced(p) for p in pictures], runtime=runtime):
        doc_kinds[presence.kind] += 1
    doc_lines = doc_kept = 0
    for doc in docs.document_set("heldout", per_kind=per_kind).values():
        everything = ocr.read_text(doc.image, runtime=runtime, keep_all=True)
        kept = ocr.read_text(doc.image, runtime=runtime)
        kept_keys = {(line.text, str(line.box)) for line in kept.lines}
        for line in everything.lines:
            if line_matches(line.text, doc.lines):
                doc_lines += 1
                doc_kept += (line.text, str(line.box)) in kept_keys

    print("\n## 2. Line filter\n")
    print("| set | before filter | after filter |")
    print("|---|---:|---:|")
    print(f"| photos with any text ({n}: {photo_count} crops + {len(docs.PHOTOS)} photos) | {any_before} ({any_before / n:.1%}) "
          f"| {any_after} ({any_after / n:.1%}), {after_patch_only} of them only names off the astronaut's mission patch |")
    print(f"| real lines kept, held-out documents | {doc_lines} | {doc_kept} ({doc_kept / max(1, doc_lines):.2%}) |")
    print(f"| real lines kept, signs in photos ({sign_count}) | {real_lines} | {real_kept} ({real_kept / max(1, real_lines):.2%}) |")
    print(f"\nRejected on the photos, by reason: {dict(sorted(rejected_reasons.items(), key=lambda kv: -kv[1]))}")

    print(f"\n## 3. Text-presence gate (long side {ocr.GATE_SIDE})\n")
    print("| check | result |")
    print("|---|---|")
    print(f"| (a) cost per picture, {runtime.threads} threads, pictures at long side 768 | {cost['batched_ms']:.1f} ms "
          f"({cost['pictures']} in one call), {cost['single_ms']:.1f} ms (one call each) |")
    print(f"| (b) documents 0.5-3 Mpx + dense pages judged page | {doc_kinds['page']}/{len(pictures)} "
          f"(regions {doc_kinds['regions']}, none {doc_kinds['none']}) |")
    print(f"| (c) photos with a sign judged regions/page | {sign_kinds['regions'] + sign_kinds['page']}/{sign_count} "
          f"(regions {sign_kinds['regions']}, page {sign_kinds['page']}, none {sign_kinds['none']}); signs 20-50% of "
          f"the width {sign_found['normal']}/{(sign_count + 1) // 2}, small faded signs 12-30% {sign_found['small']}/{sign_count // 2} |")
    for size, title in (("normal", "signs 20-50% of the width"), ("small", "small faded signs 12-30%")):
        print(f"| (c) sign lines read, gated vs ungated: {title} | {gated_read[size]}/{sign_lines[size]} vs "
              f"{full_read[size]}/{sign_lines[size]} |")
    print(f"| (d) plain photos judged none / regions / page | {kinds['none']} / {kinds['regions']} / {kinds['page']} of {n} |")
    print(f"| (d) plain photos with text after gate + filter | {any_gated} ({any_gated / n:.1%}); "
          f"{patch_only} of them only the astronaut's patch names |")
    print(f"| read time, plain photos: ungated vs gated (gate excluded) | {ungated_s / n * 1000:.0f} vs {gated_s / n * 1000:.0f} ms per photo |")
    print(f"| read time, sign photos: ungated vs gated (gate excluded) | {sign_full_s / sign_count * 1000:.0f} vs "
          f"{sign_gated_s / sign_count * 1000:.0f} ms per photo |")
    report.update(gate_cost=cost, photos=n, photos_any_before=any_before, photos_any_after=any_after,
                  photos_any_gated=any_gated, photos_patch_only=patch_only, photos_after_patch_only=after_patch_only,
                  sign_found=sign_found, photo_kinds=kinds, sign_kinds=sign_kinds,
                  sign_lines=sign_lines, sign_lines_gated=gated_read, sign_lines_full=full_read,
                  real_sign_lines=real_lines, real_sign_kept=real_kept, doc_lines=doc_lines, doc_kept=doc_kept,
                  doc_kinds=doc_kinds, rejected_reasons=rejected_reasons,
                  ms_per_photo={"ungated": ungated_s / n * 1000, "gated": gated_s / n * 1000},
                  ms_per_sign_photo={"ungated": sign_full_s / sign_count * 1000, "gated": sign_gated_s / sign_count * 1000})


def bench_gate_sizes(runtime, sizes: list[int], report: dict) -> None:
    """The gate at several sizes: cost, and the share of pictures it finds text in, per kind of picture."""
    photos = [reduced(p) for p in docs.photo_crops(60, seed=2)]
    signs = [reduced(docs.with_sign(bg, 4000 + k)[0]) for k, bg in enumerate(docs.photo_crops(30, seed=61))]
    small_signs = [reduced(docs.with_sign(bg, 5000 + k, hard=True)[0]) for k, bg in enumerate(docs.photo_crops(30, seed=71))]
    pages = [reduced(p) for p in gate_documents(20)]
    print(f"\n## 3b. Gate size sweep (pictures at long side 768, {runtime.threads} threads)\n")
    print("| side | ms per picture | documents judged page | signs 20-50% wide found | small faded signs found | plain photos with text found |")
    print("|---:|---:|---:|---:|---:|---:|")
    for side in sizes:
        ocr.text_presence(photos[:2], runtime=runtime, side=side)
        started = time.perf_counter()
        plain = ocr.text_presence(photos, runtime=runtime, side=side)
        cost = (time.perf_counter() - started) / len(photos) * 1000
        found = {
            "pages": sum(p.kind == "page" for p in ocr.text_presence(pages, runtime=runtime, side=side)) / len(pages),
            "signs": sum(p.kind != "none" for p in ocr.text_presence(signs, runtime=runtime, side=side)) / len(signs),
            "small_signs": sum(p.kind != "none" for p in ocr.text_presence(small_signs, runtime=runtime, side=side)) / len(small_signs),
            "plain": sum(p.kind != "none" for p in plain) / len(plain),
        }
        print(f"| {side} | {cost:.1f} | {found['pages']:.0%} | {found['signs']:.0%} | {found['small_signs']:.0%} | {found['plain']:.0%} |")
        report.setdefault("gate_sizes", {})[side] = dict(found, ms=cost)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-kind", type=int, default=8, help="held-out documents per kind (5 kinds)")
    parser.add_argument("--photos", type=int, default=200, help="photo crops (plus the 5 whole photos)")
    parser.add_argument("--signs", type=int, default=100, help="photos with a sign pasted in (half of them hard)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", nargs="*", default=[], choices=["spaces", "gate", "sizes"])
    parser.add_argument("--sizes", nargs="*", type=int, default=[320, 384, 448, 512, 640], help="gate sizes to sweep")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from engine.manifest import ModelBundle
    from engine.runtime import Runtime

    runtime = Runtime(ModelBundle(ROOT / "assets" / "models"), device="cpu", threads=args.threads)
    report: dict = {}
    if "spaces" not in args.skip:
        bench_spaces(runtime, args.per_kind, report)
    if "gate" not in args.skip:
        bench_filter_and_gate(runtime, args.photos, args.signs, args.per_kind, report)
    if "sizes" not in args.skip:
        bench_gate_sizes(runtime, args.sizes, report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float), encoding="utf-8")


if __name__ == "__main__":
    main()
