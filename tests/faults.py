"""Fault injection for tests/test_reliability.py and bench/bench_reliability.py (issue 18, items 2 and 3).

- `make_corpus`: a folder of small real files (crops of scikit-image's photographs as JPEG, text notes, a copy,
  a corrupt JPEG) that index and batch get through quickly.
- `kill_loop`: `fusiondesk index|batch` started again and again and SIGKILLed at seeded random moments; after
  each kill, a check of what it left on disk (the index copied as the crash left it, the results file's bytes).
- `index_state` / `compare_index` / `results_state` / `compare_results`: what "the same result as an
  uninterrupted run" and "no bytes lost" are measured with.
- The disk scenarios (`results-full`, `index-full`, `read-only`) run inside a private mount namespace
  (`unshare -m`, as root), on a small tmpfs that is filled up or remounted read-only: `python tests/faults.py
  SCENARIO ...` is that process; `in_private_mount` starts it and returns its report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("invoice harbor supplies budget meeting thursday garden tomato flour eggs butter train platform airport "
         "office party team letter receipt plumber kitchen window bicycle river mountain library concert").split()
VECTOR_TOLERANCE = 1e-5  # float32 vectors of the same file from batches of other sizes may differ in the last bits


# -------------------------------------------------------------------------------------------------- inputs


def make_corpus(folder: Path, images: int, notes: int, seed: int = 0) -> list[str]:
    """Small real files: JPEG crops (96-256 px) of scikit-image's photographs and text notes of a few
    sentences, a tenth of them in subfolders; one exact copy (the index reuses its vector) and one corrupt
    JPEG (an error row). Returns the relative paths."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = [Image.fromarray(getattr(data, name)()).convert("RGB")
               for name in ("astronaut", "chelsea", "coffee", "rocket", "camera")]
    folder.mkdir(parents=True, exist_ok=True)
    made = []

    def place(i: int, name: str) -> Path:
        sub = folder / f"set{i % 3}" if i % 10 == 9 else folder
        sub.mkdir(exist_ok=True)
        return sub / name

    for i in range(images):
        source = sources[i % len(sources)]
        side = int(rng.integers(96, 257))
        x = int(rng.integers(0, source.width - side + 1))
        y = int(rng.integers(0, source.height - side + 1))
        path = place(i, f"photo{i:04d}.jpg")
        source.crop((x, y, x + side, y + side)).save(path, quality=85)
        made.append(path)
    for i in range(notes):
        sentences = [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 12)))).capitalize() + "."
                     for _ in range(int(rng.integers(1, 4)))]
        path = place(i, f"note{i:04d}.txt")
        path.write_text(" ".join(sentences) + "\n", encoding="utf-8")
        made.append(path)
    if images:
        copy = folder / "copy_of_photo0000.jpg"
        shutil.copy2(folder / "photo0000.jpg", copy)
        made.append(copy)
        broken = folder / "broken.jpg"
        broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 4)
        made.append(broken)
    return sorted(p.relative_to(folder).as_posix() for p in made)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "desktop", *args]


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, FUSIONDESK_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_cli(argv: list[str], env: dict[str, str], timeout: float = 300) -> dict[str, Any]:
    start = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return {"argv": argv[3:], "rc": done.returncode, "stdout": done.stdout[-4000:], "stderr": done.stderr[-4000:],
            "seconds": round(time.monotonic() - start, 2)}


# Runs a command with its stdout going to a file, then prints the command's own peak RSS (not this process's) and
# its exit code.
_PEAK_RSS = ("import resource, subprocess, sys\n"
             "with open(sys.argv[1], 'wb') as out:\n"
             "    code = subprocess.run(sys.argv[2:], stdout=out).returncode\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)\n")


def run_measured(out: Path, argv: list[str], env: dict[str, str], timeout: float | None = None
                 ) -> tuple[subprocess.CompletedProcess, float, int]:
    """Run `argv` with its stdout to `out`: (the run, with its stderr; its peak RSS in MB; its exit code)."""
    result = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(out), *argv], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=timeout)
    kilobytes, code = result.stdout.split()
    return result, int(kilobytes) / 1024, int(code)


# ---------------------------------------------------------------------------------------------- the index


ITEM_COLUMNS = ("path", "size", "mtime", "hash", "modality", "vector", "ocr_text", "transcript", "segments", "error",
                "space")


def index_files(db: Path) -> list[Path]:
    return [p for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-journal")) if p.exists()]


def crash_copy(db: Path, into: Path) -> Path:
    """The index's files as a crash left them (database, WAL, rollback journal; not the rebuildable -shm),
    copied so that looking at them does not recover or checkpoint the original before the next run does."""
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    for path in index_files(db):
        shutil.copy2(path, into / path.name)
    return into / db.name


def index_state(db: Path) -> dict[str, Any]:
    """integrity_check, and the items as {path: row} (vector as bytes), of an index opened as the app opens it."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = {}
        if "items" in tables:
            for row in con.execute(f"SELECT {', '.join(ITEM_COLUMNS)} FROM items"):
                rows[row[0]] = dict(zip(ITEM_COLUMNS[1:], row[1:]))
    finally:
        con.close()
    return {"integrity": integrity, "rows": rows}


def opens_in_app(folder: Path, db: Path) -> int:
    """The app's own open (engine.index.FolderIndex: WAL, migrations) of an index file: its item count."""
    from engine.index import FolderIndex

    with FolderIndex(folder, db) as index:
        return len(index)


def compare_index(rows: dict[str, dict], reference: dict[str, dict]) -> dict[str, Any]:
    """Same paths, every column equal, vectors equal (exactly, or within VECTOR_TOLERANCE: reported)."""
    differing, max_diff, exact = [], 0.0, 0
    for path in sorted(set(rows) | set(reference)):
        a, b = rows.get(path), reference.get(path)
        if a is None or b is None:
            differing.append(f"{path}: only in {'the reference' if a is None else 'the interrupted run'}")
            continue
        other = [k for k in a if k != "vector" and a[k] != b[k]]
        if other:
            differing.append(f"{path}: {', '.join(other)} differ")
        if (a["vector"] is None) != (b["vector"] is None):
            differing.append(f"{path}: vector only in one")
        elif a["vector"] is not None:
            va, vb = np.frombuffer(a["vector"], np.float32), np.frombuffer(b["vector"], np.float32)
            if va.shape != vb.shape:
                differing.append(f"{path}: vector of {va.size} vs {vb.size} numbers")
                continue
            diff = float(np.max(np.abs(va - vb))) if va.size else 0.0
            exact += diff == 0.0
            max_diff = max(max_diff, diff)
            if diff > VECTOR_TOLERANCE:
                differing.append(f"{path}: vector differs by {diff:.2e}")
    vectors = sum(row["vector"] is not None for row in reference.values())
    return {"rows": len(rows), "reference_rows": len(reference), "differing": differing,
            "vectors": vectors, "vectors_exactly_equal": exact, "max_vector_diff": max_diff}


def index_bytes_lost(seen: dict[str, dict], final: dict[str, dict]) -> int:
    """Bytes of rows committed before a kill that the finished index no longer holds as they were."""
    lost = 0
    for path, row in seen.items():
        if final.get(path) != row:
            lost += sum(len(v) for v in row.values() if isinstance(v, (bytes, str)))
    return lost


# ---------------------------------------------------------------------------------------- the results file


TIMING_FIELDS = {"seconds", "elapsed"}


def results_state(path: Path) -> dict[str, Any]:
    """The results file's complete rows (parsed; an unparsable complete line is a `broken` one) and its torn
    tail (the bytes after the last newline: what a resume cuts)."""
    data = path.read_bytes() if path.exists() else b""
    end = data.rfind(b"\n") + 1
    rows, broken = [], []
    for line in data[:end].decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            broken.append(line[:120])
    files = [row.get("file") for row in rows]
    return {"bytes": data, "complete": data[:end], "tail": len(data) - end, "rows": rows, "broken": broken,
            "duplicates": sorted({f for f in files if files.count(f) > 1})}


def _normal(value: Any, places: int = 3) -> Any:
    """A row without timing fields, floats rounded (scores are printed with 4 decimals: one batch of another
    size can move the last one)."""
    if isinstance(value, dict):
        return {k: _normal(v, places) for k, v in value.items() if k not in TIMING_FIELDS}
    if isinstance(value, list):
        return [_normal(v, places) for v in value]
    if isinstance(value, float):
        return round(value, places)
    return value


def compare_results(rows: list[dict], reference: list[dict]) -> dict[str, Any]:
    mine = {row["file"]: row for row in rows}
    theirs = {row["file"]: row for row in reference}
    differing = []
    exact = 0
    for name in sorted(set(mine) | set(theirs)):
        a, b = mine.get(name), theirs.get(name)
        if a is None or b is None:
            differing.append(f"{name}: only in {'the reference' if a is None else 'the interrupted run'}")
        elif _normal(a) != _normal(b):
            differing.append(f"{name}: {', '.join(k for k in b if _normal(a.get(k)) != _normal(b[k]))} differ")
        else:
            exact += _normal(a, 12) == _normal(b, 12)
    return {"rows": len(rows), "reference_rows": len(reference), "differing": differing, "exactly_equal": exact}


# -------------------------------------------------------------------------------------------------- kills


@dataclass
class KillLog:
    kills: int = 0
    runs: int = 0
    seconds: float = 0.0
    moments: list[str] = field(default_factory=list)  # where each kill was aimed: "start-up +0.4 s", "row 12 +0.1 s"
    progress: list[int] = field(default_factory=list)  # files done after each kill
    final: dict[str, Any] = field(default_factory=dict)  # the last, uninterrupted run

    def to_dict(self) -> dict[str, Any]:
        return {"kills": self.kills, "runs": self.runs, "seconds": round(self.seconds, 1), "moments": self.moments,
                "progress": self.progress}


def kill_loop(argv: list[str], env: dict[str, str], kills: int, rng: np.random.Generator, done: Callable[[], int],
              total: int, batch: int, startup: float, after_kill: Callable[[int], int], timeout: float = 600,
              poll: float = 0.03) -> KillLog:
    """Run `argv` to completion, SIGKILLing it `kills` times first, each at a seeded random moment.

    A fifth of the kills (and every kill once too little is left) land during start-up: uniform in the first
    0.8 x `startup` seconds (the schema, the walk, the models loading). The others wait until a random number of
    further files is done (`done()`: files finished so far, as the disk shows it), up to an even share of what
    is left counting the last, uninterrupted run as one more share (so a kill never waits for the end), then
    a random 0-0.4 s more, cut short once one more batch is done: inside the next batch's work or its write.
    after_kill(kill number) checks what the kill left and returns the files done."""
    log = KillLog()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fusiondesk-kills-") as scratch:
        while True:
            log.runs += 1
            before = max(done(), 0)
            remaining = total - before
            plan = None
            if log.kills < kills:
                room = remaining - 2 * batch
                share = int(np.ceil(remaining / (kills - log.kills + 1)))
                if room <= 0 or rng.random() < 0.2:
                    plan = ("start-up", 0, float(rng.uniform(0.05, 0.8 * startup)))
                else:
                    plan = ("row", int(rng.integers(1, max(2, min(room, share)) + 1)), float(rng.uniform(0.0, 0.4)))
            out, err = Path(scratch) / f"{log.runs}.out", Path(scratch) / f"{log.runs}.err"
            with open(out, "w") as stdout, open(err, "w") as stderr:
                proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
                killed = plan is not None and _kill_when(proc, plan, before, done, batch, poll, timeout)
                if killed:
                    log.kills += 1
                    kind, rows, extra = plan
                    at = kind if kind == "start-up" else f"row {before + rows}"
                    log.moments.append(f"{at} +{extra:.2f} s")
                    log.progress.append(after_kill(log.kills))
                    continue
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise
            log.final = {"rc": proc.returncode, "stdout": out.read_text()[-4000:], "stderr": err.read_text()[-4000:]}
            break
    log.seconds = time.monotonic() - start
    return log


def _kill_when(proc: subprocess.Popen, plan: tuple[str, int, float], before: int, done: Callable[[], int],
               batch: int, poll: float, timeout: float) -> bool:
    """SIGKILL `proc` as planned; False when it finished first."""
    kind, rows, extra = plan
    deadline = time.monotonic() + timeout
    if kind == "row":
        while proc.poll() is None and done() < before + rows:
            if time.monotonic() > deadline:
                break
            time.sleep(poll)
    # The extra wait ends early once one more batch is on disk: on a fast machine 0.4 s can be the whole rest of
    # the run, and a kill after the last row tests nothing (and leaves the next run nothing to be killed in).
    extra_deadline = time.monotonic() + extra
    while proc.poll() is None and time.monotonic() < extra_deadline:
        if kind == "row" and done() >= before + rows + batch:
            break
        time.sleep(min(poll, max(0.0, extra_deadline - time.monotonic())))
    if proc.poll() is not None:
        return False  # finished before the kill
    proc.send_signal(signal.SIGKILL)  # no cleanup, no flush, no atexit: a crash or `kill -9`
    proc.wait()
    return True


def committed_rows(db: Path) -> int:
    """Items committed to an index now, read as a search would (read-only); -1 when it cannot be read yet."""
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
        try:
            return con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return -1


def result_rows(path: Path) -> int:
    """Whole rows in a JSONL results file now."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def index_name(folder: Path) -> str:
    from engine.index import index_path_for

    return index_path_for(folder).name


def reference_index(folder: Path, data: Path, workers: int = 2) -> dict[str, Any]:
    """An uninterrupted `fusiondesk index`: the rows every interrupted run must end with, and its timings."""
    done = run_cli(cli("index", str(folder), "--workers", str(workers), "--json"), cli_env(data))
    state = index_state(data / "indexes" / index_name(folder))
    summary = json.loads(done["stdout"]) if done["stdout"].strip().startswith("{") else {}
    return {"rc": done["rc"], "stderr": done["stderr"], "rows": state["rows"], "integrity": state["integrity"],
            "wall": done["seconds"], "work": summary.get("seconds", done["seconds"])}


def reference_batch(folder: Path, home: Path, batch: int = 4, workers: int = 2) -> dict[str, Any]:
    """An uninterrupted `fusiondesk batch` (results and the index it makes as it goes)."""
    out = home / "results.jsonl"
    done = run_cli(cli("batch", str(folder), "--out", str(out), "--workers", str(workers), "--batch-size", str(batch)),
                   cli_env(home / "data"))
    return {"rc": done["rc"], "stderr": done["stderr"], "rows": results_state(out)["rows"],
            "index": index_state(home / "data" / "indexes" / index_name(folder))["rows"], "wall": done["seconds"]}


def index_under_kills(folder: Path, total: int, home: Path, kills: int, seed: int, reference: dict[str, Any],
                      workers: int = 2) -> dict[str, Any]:
    """`fusiondesk index` SIGKILLed `kills` times, then run to the end; after each kill the index as the crash
    left it (a copy) is opened with integrity_check and by the app. Returns the figures and any problems."""
    data = home / "data"
    db = data / "indexes" / index_name(folder)
    seen: dict[str, dict] = {}
    problems: list[str] = []
    figures = {"checked": 0, "integrity_ok": 0, "opened_by_app": 0, "before_the_file_existed": 0}

    def after_kill(kill: int) -> int:
        if not db.exists():
            figures["before_the_file_existed"] += 1
            return 0
        copy = crash_copy(db, home / "crash")
        figures["checked"] += 1
        try:
            state = index_state(copy)
        except sqlite3.Error as exc:
            problems.append(f"kill {kill}: the index does not open: {exc}")
            return 0
        if state["integrity"] == "ok":
            figures["integrity_ok"] += 1
        else:
            problems.append(f"kill {kill}: integrity_check: {state['integrity']}")
        try:
            if opens_in_app(folder, copy) == len(state["rows"]):
                figures["opened_by_app"] += 1
            else:
                problems.append(f"kill {kill}: the app's open changed the item count")
        except Exception as exc:  # noqa: BLE001 - any failure to open is the finding
            problems.append(f"kill {kill}: the app cannot open the index: {type(exc).__name__}: {exc}")
        for path, row in state["rows"].items():
            if row["vector"] is not None and len(row["vector"]) != 384 * 4:
                problems.append(f"kill {kill}: {path}: a vector of {len(row['vector'])} bytes")
        seen.update(state["rows"])
        return len(state["rows"])

    startup = max(reference["wall"] - reference["work"], 0.5) + 0.3 * reference["work"] * 16 / max(total, 1)
    log = kill_loop(cli("index", str(folder), "--workers", str(workers)), cli_env(data), kills,
                    np.random.default_rng(seed), lambda: committed_rows(db), total, 16, startup, after_kill)
    final = index_state(db)
    compared = compare_index(final["rows"], reference["rows"])
    if "Traceback" in log.final["stderr"]:
        problems.append(f"the last run printed a traceback: {log.final['stderr'][-800:]}")
    return {**log.to_dict(), **figures, "final_rc": log.final["rc"], "final_integrity": final["integrity"],
            **compared, "bytes_lost": index_bytes_lost(seen, final["rows"]), "problems": problems}


def batch_under_kills(folder: Path, total: int, home: Path, kills: int, seed: int, reference: dict[str, Any],
                      batch: int = 4, workers: int = 2) -> dict[str, Any]:
    """`fusiondesk batch --out R.jsonl` SIGKILLed `kills` times, then run to the end; after each kill the results
    file's whole lines must all parse, no file twice, and every byte of them must still be there at the end."""
    out = home / "results.jsonl"
    data = home / "data"
    db = data / "indexes" / index_name(folder)
    problems: list[str] = []
    prefixes: list[bytes] = []
    figures = {"torn_tails": 0, "torn_bytes_cut": 0, "index_integrity_ok": 0, "index_checked": 0}

    def after_kill(kill: int) -> int:
        state = results_state(out)
        if state["broken"]:
            problems.append(f"kill {kill}: whole lines that do not parse: {state['broken']}")
        if state["duplicates"]:
            problems.append(f"kill {kill}: rows twice: {state['duplicates']}")
        if state["tail"]:
            figures["torn_tails"] += 1
            figures["torn_bytes_cut"] += state["tail"]
        prefixes.append(state["complete"])
        if db.exists():
            figures["index_checked"] += 1
            if index_state(crash_copy(db, home / "crash"))["integrity"] == "ok":
                figures["index_integrity_ok"] += 1
            else:
                problems.append(f"kill {kill}: the index's integrity_check failed")
        return len(state["rows"])

    startup = max(0.6, 0.35 * reference["wall"] * 16 / max(total, 16))
    log = kill_loop(cli("batch", str(folder), "--out", str(out), "--workers", str(workers), "--batch-size",
                        str(batch)), cli_env(data), kills, np.random.default_rng(seed), lambda: result_rows(out), total,
                    batch, startup, after_kill)
    final = results_state(out)
    if final["tail"] or final["broken"] or final["duplicates"]:
        problems.append(f"the finished file has a torn tail ({final['tail']} bytes), broken lines "
                        f"{final['broken']} or rows twice {final['duplicates']}")
    if "Traceback" in log.final["stderr"]:
        problems.append(f"the last run printed a traceback: {log.final['stderr'][-800:]}")
    lost = sum(len(p) - len(os.path.commonprefix([p, final["bytes"]])) for p in prefixes)
    compared = compare_results(final["rows"], reference["rows"])
    index = compare_index(index_state(db)["rows"], reference["index"])
    return {**log.to_dict(), **figures, "final_rc": log.final["rc"], "files": sorted(r["file"] for r in final["rows"]),
            **compared, "bytes_lost": lost, "index_differing": index["differing"],
            "index_max_vector_diff": index["max_vector_diff"], "problems": problems}


# ------------------------------------------------------------------------------- tmpfs, full and read-only


def can_mount() -> tuple[bool, str]:
    """Whether a tmpfs can be mounted in a private mount namespace here (root with CAP_SYS_ADMIN); else why not."""
    if shutil.which("unshare") is None:
        return False, "`unshare` (util-linux) is not installed"
    with tempfile.TemporaryDirectory() as point:
        try:
            done = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {point} && "
                                   f"mount -o remount,ro {point} && umount {point}"],
                                  capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"unshare -m failed: {exc}"
    if done.returncode != 0:
        return False, f"cannot mount a tmpfs in a private mount namespace: {done.stderr.strip() or done.returncode}"
    return True, ""


def in_private_mount(scenario: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run a disk scenario of this module under `unshare -m` (its mounts vanish with it) and return its report."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        report = Path(handle.name)
    try:
        done = subprocess.run(["unshare", "-m", sys.executable, str(Path(__file__).resolve()), scenario,
                               "--report", str(report), *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        if done.returncode != 0:
            raise RuntimeError(f"scenario {scenario} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                               f"{done.stderr[-3000:]}")
        return json.loads(report.read_text())
    finally:
        report.unlink(missing_ok=True)


def _mount_tmpfs(point: Path, size: int) -> None:
    point.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], check=True)


def _remount_read_only(point: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)


def _fill(point: Path, leave: int) -> Path:
    """A filler file that leaves about `leave` bytes free on the mount (tmpfs counts whole pages)."""
    filler = point / "filler.bin"
    free = shutil.disk_usage(point).free
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(free - leave, 0))
    return filler


def _free(point: Path) -> int:
    return shutil.disk_usage(point).free


def scenario_results_full(args) -> dict[str, Any]:
    """`batch --out` on a tmpfs that fills up mid-run, then the same command again once space is freed."""
    work, folder = Path(args.work), Path(args.folder)
    point = work / "mnt"
    _mount_tmpfs(point, args.size)
    out = point / f"results.{args.format}"
    env = cli_env(work / "data")
    argv = cli("batch", str(folder), "--out", str(out), "--workers", "2", "--batch-size", str(args.batch_size))
    filler = _fill(point, args.leave)
    report: dict[str, Any] = {"size": args.size, "free_before": _free(point)}
    report["full"] = run_cli(argv, env)
    report["free_after_full"] = _free(point)
    shutil.copy2(out, work / f"full.{args.format}") if out.exists() else None
    report["full_bytes"] = out.stat().st_size if out.exists() else 0
    filler.unlink()
    report["resumed"] = run_cli(argv, env)
    shutil.copy2(out, work / f"final.{args.format}")
    return report


def scenario_index_full(args) -> dict[str, Any]:
    """`index` with its data folder on a tmpfs that fills up mid-run, then again once space is freed."""
    work, folder = Path(args.work), Path(args.folder)
    point = work / "mnt"
    _mount_tmpfs(point, args.size)
    env = cli_env(point / "data")
    argv = cli("index", str(folder), "--workers", "2")
    (point / "data").mkdir()
    filler = _fill(point, args.leave)
    report: dict[str, Any] = {"size": args.size, "free_before": _free(point)}
    report["full"] = run_cli(argv, env)
    report["free_after_full"] = _free(point)
    dbs = sorted((point / "data" / "indexes").glob("*.sqlite"))
    report["index_files_after_full"] = sorted(p.name for p in (point / "data" / "indexes").glob("*")) \
        if (point / "data" / "indexes").is_dir() else []
    if dbs:
        crash_copy(dbs[0], work / "full")
        # The index opened in place while the disk is still full, as the next run or a search would.
        con = sqlite3.connect(dbs[0])
        report["integrity_in_place_while_full"] = con.execute("PRAGMA integrity_check").fetchone()[0]
        con.close()
    report["search_while_full"] = run_cli(cli("search", "a cat", "--dir", str(folder), "--json"), env)
    filler.unlink()
    report["resumed"] = run_cli(argv, env)
    dbs = sorted((point / "data" / "indexes").glob("*.sqlite"))
    crash_copy(dbs[0], work / "final")
    report["index_name"] = dbs[0].name
    return report


def scenario_read_only(args) -> dict[str, Any]:
    """A read-only output folder and a read-only data folder (new, and holding an index already), with three
    files of the input folder (every refusal comes before any file is looked at)."""
    work = Path(args.work)
    folder = work / "small"
    folder.mkdir()
    for path in sorted(p for p in Path(args.folder).iterdir() if p.is_file() and p.name != "broken.jpg")[:3]:
        shutil.copy2(path, folder / path.name)
    report: dict[str, Any] = {}
    ro_out = work / "ro-out"
    _mount_tmpfs(ro_out, 1 << 20)
    (ro_out / "results").mkdir()
    (ro_out / "results" / "earlier.jsonl").write_text("")
    _remount_read_only(ro_out)
    writable_data = work / "data"
    report["batch_new_out"] = run_cli(cli("batch", str(folder), "--out", str(ro_out / "results" / "r.jsonl")),
                                      cli_env(writable_data))
    report["batch_new_out_folder"] = run_cli(cli("batch", str(folder), "--out", str(ro_out / "sub" / "r.jsonl")),
                                             cli_env(writable_data))
    report["batch_existing_out"] = run_cli(cli("batch", str(folder), "--out",
                                               str(ro_out / "results" / "earlier.jsonl")), cli_env(writable_data))
    # A data folder on a read-only file system, empty (no indexes folder yet)...
    ro_empty = work / "ro-data-empty"
    _mount_tmpfs(ro_empty, 1 << 20)
    _remount_read_only(ro_empty)
    report["index_ro_data_empty"] = run_cli(cli("index", str(folder)), cli_env(ro_empty))
    report["batch_ro_data_empty"] = run_cli(cli("batch", str(folder), "--out", str(work / "r1.jsonl")),
                                            cli_env(ro_empty))
    # ... and one holding the folder's index already (made, then the file system made read-only).
    ro_full = work / "ro-data-indexed"
    _mount_tmpfs(ro_full, 8 << 20)
    report["index_before_ro"] = run_cli(cli("index", str(folder)), cli_env(ro_full))
    _remount_read_only(ro_full)
    report["index_ro_data_indexed"] = run_cli(cli("index", str(folder)), cli_env(ro_full))
    report["batch_ro_data_indexed"] = run_cli(cli("batch", str(folder), "--out", str(work / "r2.jsonl")),
                                              cli_env(ro_full))
    report["batch_ro_data_no_index"] = run_cli(cli("batch", str(folder), "--out", str(work / "r3.jsonl"), "--no-index",
                                                   "--tasks", "classify"), cli_env(ro_full))
    report["outputs_written"] = sorted(p.name for p in work.glob("r*.jsonl"))
    return report


def _same_mount_namespace_as_init() -> bool:
    try:
        return os.readlink("/proc/self/ns/mnt") == os.readlink("/proc/1/ns/mnt")
    except OSError:
        return False


SCENARIOS = {"results-full": scenario_results_full, "index-full": scenario_index_full, "read-only": scenario_read_only}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a disk scenario, run under `unshare -m` (see in_private_mount)")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--report", required=True)
    parser.add_argument("--work", required=True, help="a scratch folder on a normal disk (copies land here)")
    parser.add_argument("--folder", required=True, help="the input folder")
    parser.add_argument("--size", type=int, default=1 << 20, help="tmpfs size in bytes")
    parser.add_argument("--leave", type=int, default=32 << 10, help="bytes left free by the filler")
    parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    if _same_mount_namespace_as_init():
        parser.error("run me in a private mount namespace: unshare -m python tests/faults.py ...")
    report = SCENARIOS[args.scenario](args)
    Path(args.report).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
