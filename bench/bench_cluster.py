"""Folder mode on a cluster (issue 17): `batch` and `index --cluster local` against the embedded run on the same
files, in one run; Dask against Ray on the same per-file work; and a long run of many small files through the
cluster path. Not a test: the figures depend on the machine. Prints markdown for the README and, with --json,
writes every figure.

    .venv/bin/python bench/bench_cluster.py                                   # all parts, as in the README
    .venv/bin/python bench/bench_cluster.py --only commands --photos 100      # a quick look
    .venv/bin/python bench/bench_cluster.py --only engines --ray-python /tmp/rayenv/bin/python

1. commands: `fusiondesk batch FOLDER --out R.jsonl` (default tasks, the index made as it goes) and `fusiondesk
   index FOLDER`, embedded and with `--cluster local` (a scheduler and 2 worker processes started by the command),
   each a whole process with its own empty data folder, on bench_commands.py's photo folder (--photos photos,
   0.3-6 Mpx, 10% with a sign in them). Wall seconds, files/s, the ratio cluster / embedded, and memory sampled
   every 0.2 s with psutil: the driver process (with --cluster local it also holds the scheduler and the nannies)
   and the worker processes (its children), RSS summed at each sample. Then the results compared as the tests
   compare them (tests/faults.py: rows with timing fields aside and scores to 3 decimals, index rows equal,
   vectors within 1e-5).
2. engines: the same WorkSpec (engine.cluster) run by Dask distributed (engine.cluster.Cluster.run) and by a Ray
   actor pool (2 actors each holding engine.folder.BatchWork made by engine.cluster._make_work, chunks through
   ray.util.ActorPool.map_unordered), each in its own process: seconds to a cluster with 2 workers, seconds for
   the photos, the rows compared. Ray runs only with --ray-python (an environment with ray and this repo's
   engine dependencies; it is never part of the app). Also the disk each engine adds to an environment: the files
   (RECORD) of the distributions its package needs and the app does not.
3. scale: --many small files (95% text notes of a few sentences, 5% JPEG crops of 96-256 px; tests/faults.py
   make_corpus) through `fusiondesk batch --cluster local`: rows/s in each window of 1,000 rows, the driver's RSS
   at each 1,000 rows (flat = the driver holds no per-file state beyond its queue), its CPU seconds per row (what
   the single writer costs), and the per-worker-core rate from which the scaling is projected.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import faults  # noqa: E402  (tests/faults.py: the corpus and the comparisons the tests use)

FUSIONDESK = [sys.executable, "-m", "desktop"]


# ------------------------------------------------------------------------------------------- measured runs


def run_sampled(argv: list[str], env: dict, rows_file: Path | None = None, every: float = 0.2,
                timeout: float = 7200) -> dict:
    """Run a command; sample its RSS and its children's (summed) and, given rows_file, the rows written so far."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    driver = psutil.Process(proc.pid)
    samples = []  # (seconds, rows, driver MB, workers MB, driver CPU s)
    output: dict[str, str] = {}

    def drain(name: str, stream) -> None:
        output[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(name, stream), daemon=True)
               for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for reader in readers:
        reader.start()
    while proc.poll() is None:
        try:
            driver_mb = driver.memory_info().rss / 2**20
            cpu = sum(driver.cpu_times()[:2])
            workers_mb = 0.0
            for child in driver.children(recursive=True):
                try:
                    workers_mb += child.memory_info().rss / 2**20
                except psutil.Error:
                    pass
        except psutil.Error:
            break
        rows = faults.result_rows(rows_file) if rows_file is not None else 0
        samples.append((time.perf_counter() - start, rows, driver_mb, workers_mb, cpu))
        if time.perf_counter() - start > timeout:
            proc.kill()
        time.sleep(every)
    proc.wait()
    seconds = time.perf_counter() - start
    for reader in readers:
        reader.join()
    if proc.returncode not in (0, 1):  # 1: some files failed, which the folders here may have
        print(f"!! {' '.join(argv[2:])} exited with {proc.returncode}:\n{output['stderr'][-2500:]}", file=sys.stderr)
    return {"argv": argv[2:], "rc": proc.returncode, "seconds": seconds, "samples": samples,
            "driver_peak_mb": max((s[2] for s in samples), default=0.0),
            "workers_peak_mb": max((s[3] for s in samples), default=0.0),
            "total_peak_mb": max((s[2] + s[3] for s in samples), default=0.0),
            "stdout": output["stdout"], "stderr": output["stderr"][-3000:]}


def fresh_home(base: Path) -> dict:
    shutil.rmtree(base, ignore_errors=True)
    (base / "data").mkdir(parents=True)
    (base / "config").mkdir(parents=True)
    return dict(os.environ, FUSIONDESK_DATA_DIR=str(base / "data"), FUSIONDESK_CONFIG_DIR=str(base / "config"),
                PYTHONPATH=str(ROOT))


# ------------------------------------------------------------------------------------------------ commands


def part_commands(args, work: Path) -> dict:
    from bench_commands import folder_of, photo_set

    pool, entries = photo_set(Path(args.photo_work), args.photos, args.seed)
    folder = folder_of(Path(args.photo_work), args.seed, pool, entries)
    index_db = "indexes/" + faults.index_name(folder)
    report = {"photos": len(entries), "folder": str(folder)}
    for command in ("batch", "index"):
        runs = {}
        for where in ("embedded", "cluster"):
            home = work / f"{command}-{where}"
            env = fresh_home(home)
            out = home / "results.jsonl"
            argv = [*FUSIONDESK, command, str(folder)] + (["--out", str(out)] if command == "batch" else ["--json"])
            if where == "cluster":
                argv += ["--cluster", "local", "--cluster-workers", str(args.workers)]
            run = run_sampled(argv, env)
            run["files_per_s"] = len(entries) / run["seconds"]
            run["index"] = faults.index_state(home / "data" / index_db)["rows"]
            run["rows"] = faults.results_state(out)["rows"] if command == "batch" else []
            runs[where] = run
        same_index = faults.compare_index(runs["cluster"]["index"], runs["embedded"]["index"])
        same_rows = faults.compare_results(runs["cluster"]["rows"], runs["embedded"]["rows"])
        for run in runs.values():
            run.pop("index"), run.pop("rows"), run.pop("samples")
        report[command] = {**runs, "ratio": runs["embedded"]["seconds"] / runs["cluster"]["seconds"],
                           "index_compared": same_index, "rows_compared": same_rows}
    return report


# ------------------------------------------------------------------------------------------------- engines


ENGINE_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from engine.folder import BatchOptions, BatchWork
from engine.manifest import ModelBundle, default_bundle_dir
from engine.pipeline import FileEntry
from engine.runtime import Runtime
from engine.folder import walk

engine, folder, workers, chunk = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
entries = [e for e in walk(folder) if isinstance(e, FileEntry)]
spec = BatchWork(BatchOptions(), Runtime(ModelBundle(default_bundle_dir()), device="cpu")).spec()
chunks = [entries[i:i + chunk] for i in range(0, len(entries), chunk)]
start = time.perf_counter()
if engine == "dask":
    from engine.cluster import Cluster
    cluster = Cluster.connect("local", workers=workers)
    ready = time.perf_counter() - start
    start = time.perf_counter()
    done = [d for batch in cluster.run(spec, entries, chunk) for d in batch]
    seconds = time.perf_counter() - start
    cluster.close()
else:
    import ray
    from ray.util import ActorPool
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")

    @ray.remote(num_cpus=1)
    class Worker:
        def __init__(self, spec):
            from engine.cluster import _make_work
            self.spec, self.work = spec, _make_work(spec)

        def run(self, entries):
            self.work.clashing = set(self.spec.clashing)
            return [d.for_driver() for batch in self.work.process(entries) for d in batch]

    pool = ActorPool([Worker.remote(spec) for _ in range(workers)])
    ready = time.perf_counter() - start
    start = time.perf_counter()
    done = [d for batch in pool.map_unordered(lambda actor, c: actor.run.remote(c), chunks) for d in batch]
    seconds = time.perf_counter() - start
    ray.shutdown()
rows = sorted((d.row for d in done), key=lambda row: row["file"])
json.dump({"engine": engine, "files": len(entries), "ready_s": ready, "seconds": seconds, "rows": rows}, sys.stdout)
"""


def installed_size(python: str, package: str, app_requirements: list[str]) -> dict:
    """MB of the distributions `package` needs that the app's own requirements do not, in that environment."""
    code = r"""
import json, sys
from importlib import metadata
from packaging.requirements import Requirement

def closure(names):
    seen, todo = set(), [n.lower() for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name.lower().replace("_", "-"))
    return seen

extra = closure([sys.argv[1]]) - closure(json.loads(sys.argv[2]))
size = 0
for name in extra:
    dist = metadata.distribution(name)
    for file in dist.files or []:
        try:
            size += file.locate().stat().st_size
        except OSError:
            pass
print(json.dumps({"distributions": sorted(extra), "mb": size / 2**20}))
"""
    done = subprocess.run([python, "-c", code, package, json.dumps(app_requirements)], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-500:]}


def app_requirements() -> list[str]:
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    from packaging.requirements import Requirement

    return [Requirement(d).name for d in deps]


def part_engines(args, work: Path) -> dict:
    from bench_commands import folder_of, photo_set

    pool, entries = photo_set(Path(args.photo_work), args.engine_photos, args.seed)
    folder = folder_of(Path(args.photo_work), args.seed, pool, entries)
    report = {"photos": len(entries), "sizes": {}}
    engines = {"dask": sys.executable}
    if args.ray_python:
        engines["ray"] = args.ray_python
    for engine, python in engines.items():
        package = "distributed" if engine == "dask" else "ray"
        report["sizes"][engine] = installed_size(python, package, app_requirements())
        done = subprocess.run([python, "-c", ENGINE_CHILD, str(ROOT), engine, str(folder), str(args.workers),
                               str(args.chunk)], capture_output=True, text=True, cwd=work,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
        if done.returncode != 0:
            report[engine] = {"error": done.stderr[-2000:]}
            print(f"!! {engine}:\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        result = json.loads(done.stdout)
        result["files_per_s"] = result["files"] / result["seconds"]
        report[engine] = result
    if "rows" in report.get("dask", {}) and "rows" in report.get("ray", {}):
        report["rows_compared"] = faults.compare_results(report["ray"]["rows"], report["dask"]["rows"])
    for engine in engines:
        report.get(engine, {}).pop("rows", None)
    return report


# --------------------------------------------------------------------------------------------------- scale


def part_scale(args, work: Path) -> dict:

    folder = work / f"many-{args.many}"
    marker = folder.with_name(folder.name + ".done")
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        images = max(1, args.many // 20)
        print(f"making {args.many} small files in {folder} ...", file=sys.stderr)
        faults.make_corpus(folder, images=images, notes=args.many - images - 2, seed=args.seed)
        marker.write_text("ok\n")
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    home = work / "scale"
    env = fresh_home(home)
    out = home / "results.jsonl"
    run = run_sampled([*FUSIONDESK, "batch", str(folder), "--out", str(out), "--batch-size", str(args.chunk),
                       "--cluster", "local", "--cluster-workers", str(args.workers)], env, rows_file=out, every=0.5)
    samples = run.pop("samples")
    windows, memory = [], []
    mark, last = 1000, None
    for seconds, rows, driver_mb, _, cpu in samples:
        if last is None and rows > 0:
            last = (seconds, rows)
        while rows >= mark:
            memory.append({"rows": mark, "driver_mb": round(driver_mb, 1)})
            if last is not None and seconds > last[0]:
                windows.append({"rows": mark, "rows_per_s": round((rows - last[1]) / (seconds - last[0]), 1)})
            last = (seconds, rows)
            mark += 1000
    driver_cpu = max((s[4] for s in samples), default=0.0)
    rates = sorted(w["rows_per_s"] for w in windows)
    return {"files": files, "mean_file_kb": size / files / 1024, "seconds": run["seconds"], "rc": run["rc"],
            "files_per_s": files / run["seconds"], "windows": windows, "driver_memory": memory,
            "median_window_rows_per_s": rates[len(rates) // 2] if rates else None,
            "driver_peak_mb": run["driver_peak_mb"], "workers_peak_mb": run["workers_peak_mb"],
            "driver_cpu_s": driver_cpu, "driver_cpu_ms_per_row": 1000 * driver_cpu / max(1, files),
            "rows_written": faults.result_rows(out), "stderr": run["stderr"][-600:]}


# -------------------------------------------------------------------------------------------------- report


def print_report(report: dict, args) -> None:
    if "commands" in report:
        data = report["commands"]
        print(f"\n### Embedded vs `--cluster local` ({args.workers} workers), {data['photos']} photos, whole commands\n")
        print("| command | embedded | --cluster local | cluster / embedded | driver peak | workers peak (sum) | "
              "embedded peak | same results |")
        print("|---|---|---|---|---|---|---|---|")
        for command in ("batch", "index"):
            d = data[command]
            e, c = d["embedded"], d["cluster"]
            idx = d["index_compared"]
            rows = d["rows_compared"]
            same = (f"{rows['rows'] - len(rows['differing'])}/{rows['reference_rows']} rows, " if command == "batch"
                    else "") + (f"{idx['rows'] - len(idx['differing'])}/{idx['reference_rows']} index rows, "
                                f"max vector diff {idx['max_vector_diff']:.1e}")
            print(f"| `{command}` | {e['seconds']:.1f} s ({e['files_per_s']:.1f} files/s) | {c['seconds']:.1f} s "
                  f"({c['files_per_s']:.1f} files/s) | {d['ratio']:.2f}x | {c['driver_peak_mb']:.0f} MB | "
                  f"{c['workers_peak_mb']:.0f} MB | {e['total_peak_mb']:.0f} MB | {same} |")
    if "engines" in report:
        data = report["engines"]
        print(f"\n### Dask vs Ray on the same per-file work ({data['photos']} photos, {args.workers} workers)\n")
        print("| engine | adds to an environment | cluster up | photos | files/s |")
        print("|---|---|---|---|---|")
        for engine in ("dask", "ray"):
            if engine not in data:
                continue
            d, size = data[engine], data["sizes"].get(engine, {})
            if "error" in d:
                print(f"| {engine} | {size.get('mb', 0):.0f} MB | failed | | |")
                continue
            print(f"| {engine} | {size.get('mb', 0):.0f} MB ({len(size.get('distributions', []))} distributions) | "
                  f"{d['ready_s']:.1f} s | {d['seconds']:.1f} s | {d['files_per_s']:.2f} |")
        if "rows_compared" in data:
            rows = data["rows_compared"]
            print(f"\nRows Ray vs Dask: {rows['rows'] - len(rows['differing'])}/{rows['reference_rows']} the same.")
    if "scale" in report:
        d = report["scale"]
        print(f"\n### {d['files']} small files through `batch --cluster local` ({args.workers} workers)\n")
        rates = [w["rows_per_s"] for w in d["windows"]]
        mem = d["driver_memory"]
        print(f"- {d['seconds']:.0f} s, {d['files_per_s']:.1f} files/s overall (mean file {d['mean_file_kb']:.1f} KB); "
              f"per 1,000 rows: median {d['median_window_rows_per_s']} rows/s, range {min(rates, default=0):.0f}-"
              f"{max(rates, default=0):.0f}")
        if mem:
            print(f"- driver RSS at 1,000 rows {mem[0]['driver_mb']:.0f} MB, at {mem[len(mem) // 2]['rows']:,} "
                  f"{mem[len(mem) // 2]['driver_mb']:.0f} MB, at {mem[-1]['rows']:,} {mem[-1]['driver_mb']:.0f} MB; "
                  f"workers peak {d['workers_peak_mb']:.0f} MB")
        print(f"- driver CPU {d['driver_cpu_ms_per_row']:.2f} ms per row (scheduler, results file, index, resume "
              f"bookkeeping): one writer keeps up with about {1000 / max(d['driver_cpu_ms_per_row'], 1e-6):.0f} "
              f"rows/s per driver core; per worker core {d['files_per_s'] / args.workers:.1f} files/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["commands", "engines", "scale"], action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--photos", type=int, default=500, help="photos for the commands (default 500)")
    parser.add_argument("--engine-photos", type=int, default=200, help="photos for Dask vs Ray (default 200)")
    parser.add_argument("--many", type=int, default=20000, help="small files for the scale run (default 20000)")
    parser.add_argument("--workers", type=int, default=2, help="cluster workers (default 2)")
    parser.add_argument("--chunk", type=int, default=16, help="files per task (default 16, the batch size)")
    parser.add_argument("--ray-python", help="a Python with ray installed (and this repo's engine dependencies)")
    parser.add_argument("--photo-work", default="/tmp/fusiondesk-bench-commands", help="bench_commands' photo cache")
    parser.add_argument("--work", default="/tmp/fusiondesk-bench-cluster")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    parts = args.only or ["commands", "engines", "scale"]
    report: dict = {"cpus": os.cpu_count()}
    for part in parts:
        report[part] = {"commands": part_commands, "engines": part_engines, "scale": part_scale}[part](args, work)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    print_report(report, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
