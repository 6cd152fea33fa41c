"""`batch` and `index --cluster` on a real Dask cluster on loopback (issue 17): a scheduler and 2 worker processes
(each under its nanny, as `dask worker` runs them) started here, the same rows and vectors as the run on one
machine, a worker killed by PID mid-run, a file that crashes every worker it meets, the driver killed and rerun,
an address where nothing listens, `--cluster local`, and the message when the extra is not installed.
The cluster is always shut down at the end (its processes are in their own process groups)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, speak
from faults import (VECTOR_TOLERANCE, cli, cli_env, compare_index, compare_results, index_name, index_state,
                    make_corpus, result_rows, results_state, run_cli)

distributed = pytest.importorskip("distributed", reason="the cluster extra: pip install -e '.[cluster]'")

DASK = [sys.executable, "-m", "dask"]
POISON_PRELOAD = ROOT / "tests" / "cluster_poison.py"


class LoopbackCluster:
    """A scheduler and its workers as separate processes, as an operator would start them on a cluster."""

    def __init__(self, home: Path, workers: int = 2):
        self.home = home
        self.processes: list[subprocess.Popen] = []
        # A chunk may meet one dying worker and be run again; the second death ends its retries (engine.cluster then
        # runs its files one by one to find the file that does it).
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="1")
        scheduler_file = home / "scheduler.json"
        self._start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", str(scheduler_file))
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, (home / "scheduler.log").read_text()
            time.sleep(0.2)
        self.address = json.loads(scheduler_file.read_text())["address"]
        for i in range(workers):
            self._start(f"worker{i}", "worker", self.address, "--name", f"w{i}", "--host", "127.0.0.1",
                        "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--preload", str(POISON_PRELOAD),
                        "--local-directory", str(home / f"w{i}"))
        self.client = distributed.Client(self.address, timeout=30, set_as_default=False)
        self.wait_for_workers(workers)

    def _start(self, log: str, *args: str) -> None:
        with open(self.home / f"{log}.log", "wb") as out:
            self.processes.append(subprocess.Popen([*DASK, *args], cwd=self.home, env=self.env, stdout=out,
                                                   stderr=subprocess.STDOUT, start_new_session=True))

    def wait_for_workers(self, count: int = 2) -> None:
        self.client.wait_for_workers(count, timeout=120)

    def worker_pids(self) -> dict[str, int]:
        """Each worker's name -> the PID of its worker process (the nanny's child, which does the work)."""
        info = self.client.scheduler_info()["workers"]
        pids = self.client.run(os.getpid)
        return {info[address]["name"]: pid for address, pid in pids.items()}

    def busy(self) -> dict[str, list]:
        """Each worker's name -> the tasks the scheduler has given it and not yet had back."""
        info = self.client.scheduler_info()["workers"]
        return {info[address]["name"]: keys for address, keys in self.client.processing().items()}

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                         for path in sorted(self.home.glob("*.log")))

    def shut_down(self) -> None:
        self.client.close()
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = LoopbackCluster(tmp_path_factory.mktemp("dask"))
    try:
        yield running
    finally:
        running.shut_down()
    assert all(process.poll() is not None for process in running.processes)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, photos) -> Path:
    """Every modality: small photos, notes, a copy, a corrupt JPEG, a full-size photo, a rendered invoice, speech."""
    from docs import INVOICE, render

    folder = tmp_path_factory.mktemp("mixed")
    make_corpus(folder, images=14, notes=10, seed=7)
    Image.open(photos["chelsea"]).save(folder / "chelsea.jpg", quality=90)
    render(INVOICE, seed=3).image.save(folder / "invoice.png")
    speak("the quarterly budget meeting moved to thursday afternoon", folder / "meeting.wav")
    return folder


def _batch(folder: Path, home: Path, *extra: str, timeout: float = 300) -> dict:
    out = home / "results.jsonl"
    done = run_cli(cli("batch", str(folder), "--out", str(out), "--batch-size", "4", *extra), cli_env(home / "data"),
                   timeout=timeout)
    return done | {"rows": results_state(out)["rows"],
                   "index": index_state(home / "data" / "indexes" / index_name(folder))["rows"]}


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _assert_same(run: dict, reference: dict) -> None:
    rows = compare_results(run["rows"], reference["rows"])
    assert rows["differing"] == [] and rows["rows"] == rows["reference_rows"], rows
    index = compare_index(run["index"], reference["index"])
    assert index["differing"] == [] and index["rows"] == index["reference_rows"], index
    assert index["max_vector_diff"] <= VECTOR_TOLERANCE


@pytest.fixture(scope="module")
def local_reference(mixed_folder, tmp_path_factory) -> dict:
    reference = _batch(mixed_folder, tmp_path_factory.mktemp("local"))
    assert reference["rc"] == 1, reference["stderr"]  # the corrupt JPEG
    return reference


def test_batch_and_index_on_the_cluster_give_the_local_results(cluster, mixed_folder, local_reference, tmp_path):
    on_cluster = _batch(mixed_folder, tmp_path / "batch", "--cluster", cluster.address)
    assert on_cluster["rc"] == 1, on_cluster["stderr"] + cluster.logs()
    assert f"cluster at {cluster.address}: 2 workers" in on_cluster["stderr"]
    _assert_same(on_cluster, local_reference)
    by_file = {row["file"]: row for row in on_cluster["rows"]}
    assert "budget" in by_file["meeting.wav"]["transcribe"]["text"].lower()
    assert "INVOICE" in by_file["invoice.png"]["read"]["text"].upper()
    assert [f for f, row in by_file.items() if row["status"] == "error"] == ["broken.jpg"]

    # `index` alone: the same vectors and texts as an index made on this machine.
    local_index = run_cli(cli("index", str(mixed_folder), "--json"), cli_env(tmp_path / "index-local"))
    cluster_index = run_cli(cli("index", str(mixed_folder), "--json", "--cluster", cluster.address),
                            cli_env(tmp_path / "index-cluster"))
    assert local_index["rc"] == cluster_index["rc"] == 1, cluster_index["stderr"] + cluster.logs()
    assert json.loads(cluster_index["stdout"])["errors"] == json.loads(local_index["stdout"])["errors"]
    compared = compare_index(index_state(tmp_path / "index-cluster" / "indexes" / index_name(mixed_folder))["rows"],
                             index_state(tmp_path / "index-local" / "indexes" / index_name(mixed_folder))["rows"])
    assert compared["differing"] == [] and compared["rows"] == len(_files(mixed_folder)), compared


def test_a_worker_killed_mid_run_loses_nothing_and_repeats_nothing(cluster, tmp_path):
    folder = tmp_path / "many"
    expected = make_corpus(folder, images=60, notes=60, seed=11)
    reference = _batch(folder, tmp_path / "local")
    home = tmp_path / "cluster"
    out = home / "results.jsonl"
    driver = subprocess.Popen(cli("batch", str(folder), "--out", str(out), "--batch-size", "4", "--cluster",
                                  cluster.address), cwd=ROOT, env=cli_env(home / "data"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while result_rows(out) < 12:
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[1]
            time.sleep(0.05)
        victim = cluster.worker_pids()["w1"]
        busy = cluster.busy()
        os.kill(victim, signal.SIGKILL)
        assert busy["w1"] and result_rows(out) < len(expected)  # it had files in hand, the run was not over
        _, stderr = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 1, stderr + cluster.logs()  # the corrupt JPEG
    state = results_state(out)
    assert state["duplicates"] == [] and sorted(row["file"] for row in state["rows"]) == sorted(expected)
    _assert_same({"rows": state["rows"], "index": index_state(home / "data" / "indexes" / index_name(folder))["rows"]},
                 reference)
    cluster.wait_for_workers(2)  # the nanny started w1 again
    assert cluster.worker_pids()["w1"] != victim


def test_a_file_that_crashes_every_worker_becomes_an_error_row(cluster, photos, runtime, tmp_path):
    from engine.cluster import CRASHED, Cluster
    from engine.folder import BatchOptions, BatchRun, read_results

    folder = tmp_path / "poisoned"
    folder.mkdir()
    for i in range(7):
        (folder / f"note{i}.txt").write_text(f"note {i} about the harbour supplies", encoding="utf-8")
    for name in ("coffee", "rocket"):
        Image.open(photos[name]).resize((160, 120)).save(folder / f"{name}.jpg")
    Image.open(photos["chelsea"]).resize((160, 120)).save(folder / "poison.jpg")  # a good JPEG: the worker crashes
    seen = []
    run = BatchRun(folder, tmp_path / "results.jsonl", BatchOptions(tasks=("classify",), batch_size=4), runtime,
                   progress=lambda progress: seen.append(dict(progress.workers)))
    with Cluster.connect(cluster.address) as connected:
        run.use_cluster(connected)
        summary = run.run()
    rows = {row["file"]: row for row in read_results(tmp_path / "results.jsonl")}
    assert sorted(rows) == sorted(p.name for p in folder.iterdir())
    assert rows["poison.jpg"]["status"] == "error" and rows["poison.jpg"]["error"] == CRASHED
    assert all(row["status"] == "ok" for name, row in rows.items() if name != "poison.jpg"), cluster.logs()
    assert summary.ok == 9 and summary.failed == 1
    # Progress counted each worker's files: every file the workers finished, under the workers' own names.
    assert set(seen[-1]) <= {"w0", "w1"} and sum(seen[-1].values()) == 9
    cluster.wait_for_workers(2)


KILL_DRIVER = """
import os, signal, sys
from engine.cluster import Cluster
from engine.folder import BatchOptions, BatchRun

def die_after_eight(progress):
    if progress.done >= 8:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup: the cluster just loses its client

run = BatchRun(sys.argv[1], sys.argv[2], BatchOptions(tasks=("classify",), batch_size=2), progress=die_after_eight)
run.use_cluster(Cluster.connect(sys.argv[3]))
run.run()
"""


def test_the_driver_killed_then_rerun_resumes(cluster, tmp_path):
    folder = tmp_path / "driver"
    expected = make_corpus(folder, images=12, notes=20, seed=5)
    out = tmp_path / "results.jsonl"
    killed = subprocess.run([sys.executable, "-c", KILL_DRIVER, str(folder), str(out), cluster.address], cwd=ROOT,
                            env=cli_env(tmp_path / "data"), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    before = [row["file"] for row in results_state(out)["rows"]]
    partial = len(before)
    assert 8 <= partial < len(expected)
    rerun = run_cli(cli("batch", str(folder), "--out", str(out), "--tasks", "classify", "--cluster", cluster.address),
                    cli_env(tmp_path / "data"))
    assert rerun["rc"] == (0 if "broken.jpg" in before else 1), rerun["stderr"]  # the corrupt JPEG: this run's?
    assert f"{partial} already done" in rerun["stderr"]
    state = results_state(out)
    assert state["duplicates"] == [] and sorted(row["file"] for row in state["rows"]) == sorted(expected)


def test_an_unreachable_cluster_is_said_at_the_start(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "note.txt").write_text("a note", encoding="utf-8")
    done = run_cli(cli("batch", str(folder), "--out", str(tmp_path / "r.jsonl"), "--cluster", "tcp://127.0.0.1:9"),
                   cli_env(tmp_path / "data"), timeout=120)
    assert done["rc"] != 0 and "Traceback" not in done["stderr"]
    assert "cannot reach the cluster at tcp://127.0.0.1:9" in done["stderr"]
    assert not (tmp_path / "r.jsonl").exists()


def test_cluster_local_starts_one_here(mixed_folder, local_reference, tmp_path):
    on_local_cluster = _batch(mixed_folder, tmp_path, "--cluster", "local")
    assert "cluster on this machine: 2 workers" in on_local_cluster["stderr"]
    _assert_same(on_local_cluster, local_reference)


def test_without_the_extra_the_message_says_how_to_install_it(tmp_path):
    hidden = tmp_path / "no-dask"
    (hidden / "dask").mkdir(parents=True)
    (hidden / "dask" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "note.txt").write_text("a note", encoding="utf-8")
    env = cli_env(tmp_path / "data", PYTHONPATH=f"{hidden}{os.pathsep}{ROOT}")
    done = run_cli(cli("index", str(folder), "--cluster", "local"), env)
    assert done["rc"] != 0 and "Traceback" not in done["stderr"]
    assert 'pip install -e ".[cluster]"' in done["stderr"]


def test_a_worker_with_another_model_bundle_says_so(cluster, runtime, tmp_path):
    from dataclasses import replace

    from engine.cluster import Cluster
    from engine.errors import FusionDeskError
    from engine.index import IndexWork
    from engine.pipeline import entry_for

    note = tmp_path / "note.txt"
    note.write_text("a note about the harbour", encoding="utf-8")
    spec = replace(IndexWork(runtime).spec(), bundle_version="some-other-build")
    with Cluster.connect(cluster.address) as connected:
        with pytest.raises(FusionDeskError, match="give every node the same bundle"):
            list(connected.run(spec, [entry_for(note)], 4))
