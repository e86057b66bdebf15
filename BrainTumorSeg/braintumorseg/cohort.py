"""Running a cohort: resume, shards, worker processes preparing cases for the models, and a Dask backend.

A case is finished when its report JSON, written last and atomically after the label map, carries the
case's fingerprint: the SHA-256 of its input files' contents, the run settings, the model card and the
engine version. A rerun skips such cases ("skipped-done"), keeps earlier failures with the same
fingerprint unless asked to retry them ("skipped-failed" / "retried"), and segments the rest. The summary
is rewritten after every case, so a run killed at any moment loses only the cases in flight.

Labels do not depend on how the cases are run: the network and every process's ITK filters use the thread
counts of the process that starts the run (bfloat16 sums on the CPU depend on the thread count).
"""

from __future__ import annotations

import glob
import hashlib
import json
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from . import __version__
from .batch import SUMMARY_STEM, BatchSummary, CaseResult, output_names
from .cases import Case
from .errors import Cancelled, InputError
from .modelcard import ModelCard, sha256_of
from .pipeline import Pipeline, PreparedInputs, SegmentationReport, SegmentationSettings
from .settings import BACKENDS, CohortSettings

@dataclass(frozen=True)
class Threads:
    """CPU threads of the network (torch) and of ITK filters, the same in every process of a run."""

    torch: int
    itk: int

    @classmethod
    def of_this_process(cls) -> Threads:
        import SimpleITK as sitk
        import torch
        return cls(torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())

    def apply(self) -> None:
        import SimpleITK as sitk
        import torch
        torch.set_num_threads(self.torch)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(self.itk)


@dataclass
class Job:
    """One case to segment: where its results go and its fingerprint."""

    index: int  # among all the cases found, before sharding
    case: Case
    name: str
    output: Path
    report: Path
    fingerprint: str
    action: str = "segmented"


def parse_shard(text: str) -> tuple[int, int]:
    """ "K/N" (1 <= K <= N) as (K, N), "" as (1, 1) (all the cases); one sentence for anything else."""
    if not text:
        return 1, 1
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdecimal() for p in parts):
        raise InputError(f"--shard {text} is not K/N; give e.g. --shard 2/8 (this job does the 2nd of 8 shares).")
    k, n = int(parts[0]), int(parts[1])
    if not 1 <= k <= n:
        raise InputError(f"--shard {text}: K must be between 1 and N; with Slurm use "
                         "--shard $((SLURM_ARRAY_TASK_ID + 1))/N for an array numbered from 0.")
    return k, n


def shard_of(count: int, shard: tuple[int, int]) -> list[int]:
    """The indices of the cases in shard K of N: every N-th case from the K-th, so shards get similar shares."""
    k, n = shard
    return list(range(k - 1, count, n))


def summary_stem(shard: tuple[int, int]) -> str:
    return SUMMARY_STEM if shard == (1, 1) else f"{SUMMARY_STEM}-shard-{shard[0]}-of-{shard[1]}"


def input_files(inputs) -> dict[str, Path]:
    """The files a case reads: its images by modality, or every file of its DICOM study (with its overrides)."""
    if isinstance(inputs, Mapping):
        return {m: Path(p) for m, p in inputs.items()}
    return {str(p.relative_to(inputs.folder)): p for p in sorted(Path(inputs.folder).rglob("*")) if p.is_file()}


def fingerprint(inputs, card: ModelCard, settings: SegmentationSettings,
                native_card: ModelCard | None = None) -> str:
    """SHA-256 over the input files' contents, the settings, the model cards and weights and the engine version."""
    document = {
        "engine": __version__,
        "card": card.to_dict(),
        "weights": card.sha256 or sha256_of(card.weights_path),
        "native_card": native_card.to_dict() if native_card is not None else None,
        "settings": asdict(settings),
        "inputs": {m: sha256_of(p) for m, p in sorted(input_files(inputs).items())},
        "overrides": getattr(inputs, "overrides", {}),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def finished_result(job: Job) -> CaseResult | None:
    """The result of an earlier run when its report proves it finished with this fingerprint, else None."""
    try:
        report = json.loads(job.report.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("fingerprint") != job.fingerprint or not job.output.is_file():
        return None
    return CaseResult(job.name, "ok", str(job.output), str(job.report), report.get("total_seconds", 0.0),
                      volumes_ml=report.get("volumes_ml", {}), warnings=report.get("warnings", []),
                      action="skipped-done", fingerprint=job.fingerprint)


def earlier_failures(summary_path: Path) -> dict[str, CaseResult]:
    """Failed cases of an earlier run's summary, by case name (none when there is no readable summary)."""
    try:
        summary = BatchSummary.from_json(summary_path.read_text())
    except (OSError, ValueError, TypeError, KeyError):
        return {}
    return {r.case: r for r in summary.results if r.status != "ok" and r.fingerprint}


def plan_cohort(cases: list[Case], folder: Path, pipeline: Pipeline,
                cohort: CohortSettings) -> tuple[list[Job], dict[int, CaseResult]]:
    """This shard's jobs to run, and the results kept from earlier runs (by case index)."""
    names = output_names(cases)
    shard = parse_shard(cohort.shard)
    failures = earlier_failures(folder / f"{summary_stem(shard)}.json")
    jobs, kept = [], {}
    for index in shard_of(len(cases), shard):
        case, name = cases[index], names[index]
        try:
            digest = fingerprint(case.inputs, pipeline.card, pipeline.settings, pipeline.native_card)
        except OSError:  # an unreadable input: its job fails with one sentence
            digest = ""
        job = Job(index, case, name, folder / f"{name}.nii.gz", folder / f"{name}.json", digest)
        done = finished_result(job) if digest else None
        failed = failures.get(name)
        same_failure = failed is not None and failed.fingerprint == digest
        if done:
            kept[index] = done
        elif same_failure and not cohort.retry_failed:
            kept[index] = replace(failed, action="skipped-failed")
        else:
            jobs.append(replace(job, action="retried") if same_failure else job)
    return jobs, kept


def outcome(job: Job, segment: Callable[[], SegmentationReport]) -> CaseResult:
    """Run one case's work and say how it went; a broken case never stops the cohort, a cancel does."""
    start = time.perf_counter()
    try:
        report = segment()
    except (Cancelled, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001 - one case's bug must not stop the batch
        result = failure(job, error)
    else:
        result = CaseResult(job.name, "ok", str(job.output), str(job.report), volumes_ml=report.volumes_ml,
                            warnings=report.warnings, action=job.action, fingerprint=job.fingerprint)
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def failure(job: Job, error: Exception) -> CaseResult:
    """A failed case: "bad input" with the error's sentence, or "error" with a short traceback (call it in the
    `except` block)."""
    result = CaseResult(job.name, "bad input", message=str(error), action=job.action, fingerprint=job.fingerprint)
    if not isinstance(error, InputError):
        result.status = "error"
        result.message = f"{type(error).__name__}: {error} | " + traceback.format_exc(limit=3).replace("\n", " ")
    return result


def finish(pipeline: Pipeline, job: Job, prepared: PreparedInputs):
    prepared.report.fingerprint = job.fingerprint
    return pipeline.finish_files(prepared, job.output, job.report)


def prepare(pipeline: Pipeline, job: Job) -> PreparedInputs:
    if not job.fingerprint:
        files = ", ".join(map(str, input_files(job.case.inputs).values())) or str(getattr(job.case.inputs, "folder", ""))
        raise InputError(f"cannot read the inputs of case {job.name} ({files}); check that the files exist and are "
                         "readable.")
    return pipeline.prepare_files(job.case.inputs)


# ---- in this process, one case after another ---------------------------------------------------

def run_here(jobs: list[Job], pipeline: Pipeline,
             on_case: Callable[[Job], None] = lambda job: None) -> Iterator[CaseResult]:
    for job in jobs:
        on_case(job)
        yield outcome(job, lambda: finish(pipeline, job, prepare(pipeline, job)))


# ---- worker processes prepare, this process runs the network -----------------------------------

_worker: Pipeline | None = None


def _start_worker(card: ModelCard, settings: SegmentationSettings, threads: Threads) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it ends the workers
    threads.apply()
    _worker = Pipeline(card, settings)  # preprocessing only: the model is never loaded here


def _prepare_in_worker(job: Job) -> PreparedInputs | CaseResult:
    start = time.perf_counter()
    try:
        return prepare(_worker, job)
    except Exception as error:  # noqa: BLE001 - reported like any failed case
        result = failure(job, error)
        result.seconds = round(time.perf_counter() - start, 2)
        return result


def run_with_workers(jobs: list[Job], pipeline: Pipeline, workers: int, threads: Threads) -> Iterator[CaseResult]:
    """`workers` processes run the CPU stages of the next cases while this process runs the network (the one
    model in memory) on the current one; at most `workers + 1` prepared cases wait, in the order of the jobs."""
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with context.Pool(workers, _start_worker, (pipeline.card, pipeline.settings, threads)) as pool:
        todo, pending = iter(jobs), deque()

        def submit() -> None:
            job = next(todo, None)
            if job is not None:
                pending.append((job, pool.apply_async(_prepare_in_worker, (job,))))

        for _ in range(workers + 1):
            submit()
        while pending:
            job, future = pending.popleft()
            prepared = future.get()
            submit()
            if isinstance(prepared, CaseResult):
                yield prepared
                continue
            result = outcome(job, lambda: finish(pipeline, job, prepared))
            result.seconds = round(result.seconds + prepared.seconds, 2)
            yield result


# ---- Dask: each worker process keeps the models; its threads prepare cases while one runs the network ----

_dask_state: dict = {}
_dask_lock = threading.Lock()


def _on_dask_worker(card: ModelCard, native_card: ModelCard | None, settings: SegmentationSettings,
                    threads: Threads, job: Job) -> CaseResult:
    """One case on a Dask worker: prepared in this task's thread, the network under the process's models."""
    key = (card.path, native_card.path if native_card else None, settings, threads)
    with _dask_lock:
        if _dask_state.get("key") != key:
            threads.apply()  # Dask's nanny sets OMP_NUM_THREADS=1; use the client's counts instead
            _dask_state.update(key=key, model=Pipeline(card, settings, native_card=native_card),
                               lock=threading.Lock(),
                               local=threading.local())
        state = _dask_state
    local = state["local"]
    if getattr(local, "pipeline", None) is None:
        local.pipeline = Pipeline(card, settings)  # one preprocessing pipeline per thread

    def segment():
        prepared = prepare(local.pipeline, job)
        with state["lock"]:
            return finish(state["model"], job, prepared)

    return outcome(job, segment)


def run_on_dask(jobs: list[Job], pipeline: Pipeline, cohort: CohortSettings, threads: Threads) -> Iterator[CaseResult]:
    """Each job is a Dask task; results come back as they finish. `scheduler` "local" starts a LocalCluster
    of `max(1, workers)` processes with one thread each, else it is the address of a running scheduler."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InputError("the dask backend needs Dask distributed: pip install 'braintumorseg[dask]'.") from None
    cluster, environ = None, dict(os.environ)  # a LocalCluster leaves MKL_NUM_THREADS=1 and more in os.environ
    try:
        if cohort.scheduler == "local":
            cluster = LocalCluster(n_workers=max(1, cohort.workers), threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        client = Client(cluster if cluster is not None else cohort.scheduler, timeout="20s")
    except (OSError, TimeoutError, ValueError) as error:
        if cluster is not None:
            cluster.close()
        restore_environment(environ)
        raise InputError(f"cannot reach the Dask scheduler at {cohort.scheduler} ({error}); start one "
                         "(dask scheduler, or dask-jobqueue's SLURMCluster) or use --scheduler local.") from None
    try:
        futures = [client.submit(_on_dask_worker, pipeline.card, pipeline.native_card, pipeline.settings, threads,
                                 job, pure=False,
                                 key=f"braintumorseg-{job.index}-{job.fingerprint[:12]}") for job in jobs]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            client.cancel(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        restore_environment(environ)


def restore_environment(environ: dict[str, str]) -> None:
    """Put os.environ back as it was, so that programs this process starts later get its thread settings."""
    os.environ.clear()
    os.environ.update(environ)


# ---- the run ------------------------------------------------------------------------------------

def run_cohort(cases: list[Case], output_folder: str | Path, pipeline: Pipeline,
               cohort: CohortSettings = CohortSettings(), threads: Threads | None = None,
               on_case: Callable[[Job], None] = lambda job: None,
               on_result: Callable[[CaseResult], None] = lambda result: None,
               on_plan: Callable[[list[Job], dict[int, CaseResult]], None] = lambda jobs, kept: None,
               input_folder: str = "") -> BatchSummary:
    """Segment this shard's cases into OUTDIR/<case>.nii.gz with their reports, resuming an earlier run; the
    summary (summary.json/.csv, or summary-shard-K-of-N.*) is rewritten after every case, in case order.

    Ctrl-C (KeyboardInterrupt) or a cancel stops the run; the summary still lists every finished case.
    """
    if cohort.backend not in BACKENDS:
        raise InputError(f"unknown backend '{cohort.backend}'; use one of {', '.join(BACKENDS)}.")
    folder = Path(output_folder)
    folder.mkdir(parents=True, exist_ok=True)
    threads = threads or Threads.of_this_process()
    jobs, results = plan_cohort(cases, folder, pipeline, cohort)
    on_plan(jobs, results)
    shard = parse_shard(cohort.shard)
    summary = BatchSummary(str(input_folder), str(folder), pipeline.models(),
                           shard="" if shard == (1, 1) else f"{shard[0]}/{shard[1]}")
    stem = summary_stem(shard)
    order = {job.name: job.index for job in jobs}
    remove_partial_files(folder, [job.name for job in jobs] + [stem])

    def write() -> None:
        summary.results = [results[i] for i in sorted(results)]
        summary.write(folder, stem)

    write()
    for index in sorted(results):
        on_result(results[index])
    if cohort.backend == "dask":
        running: Iterable[CaseResult] = run_on_dask(jobs, pipeline, cohort, threads)
    elif cohort.workers > 0:
        running = run_with_workers(jobs, pipeline, cohort.workers, threads)
    else:
        running = run_here(jobs, pipeline, on_case)
    try:
        for result in running:
            results[order[result.case]] = result
            write()
            on_result(result)
    except (Cancelled, KeyboardInterrupt):
        summary.cancelled = True
    finally:
        close = getattr(running, "close", None)
        if close:
            close()
    write()
    return summary


def remove_partial_files(folder: Path, stems: list[str]) -> None:
    """Delete what a killed run was writing (.<name>.partial<pid> files) for the cases this run redoes."""
    for stem in stems:
        for path in folder.glob(f".{glob.escape(stem)}.*partial*"):
            path.unlink(missing_ok=True)


def merge_summaries(cases: list[Case], folder: Path, input_folder: str = "") -> BatchSummary:
    """One summary.json/.csv from the shard summaries of a job array, in case order; refuses a missing shard or
    a case no shard finished (rerun that shard: it resumes)."""
    shards = sorted(folder.glob(f"{SUMMARY_STEM}-shard-*-of-*.json"))
    if not shards:
        raise InputError(f"no shard summary ({SUMMARY_STEM}-shard-K-of-N.json) in {folder}; run batch --shard K/N "
                         "into this folder first.")
    summaries = [BatchSummary.from_json(p.read_text()) for p in shards]
    counts = {s.shard.split("/")[1] for s in summaries}
    if len(counts) != 1:
        raise InputError(f"the shard summaries in {folder} come from splits into {' and '.join(sorted(counts))} "
                         "shards; keep the summaries of one split only.")
    total = int(counts.pop())
    missing = sorted(set(range(1, total + 1)) - {int(s.shard.split("/")[0]) for s in summaries})
    if missing:
        raise InputError(f"shard {missing[0]} of {total} has no summary in {folder} "
                         f"({summary_stem((missing[0], total))}.json); run that shard first.")
    by_name = {r.case: r for s in summaries for r in s.results}
    names = output_names(cases)
    absent = [n for n in names if n not in by_name]
    if absent:
        raise InputError(f"{len(absent)} case(s) have no result in the shard summaries (first: {absent[0]}); rerun "
                         "their shards, which resume where they stopped.")
    merged = BatchSummary(str(input_folder), str(folder), summaries[0].model,
                          [by_name[n] for n in names], cancelled=any(s.cancelled for s in summaries))
    merged.write(folder)
    return merged
