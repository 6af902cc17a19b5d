"""Run a per-case function over many cases: one process per core, one thread per process.

One thread per worker because the pool already uses every core, and because BLAS threads
fighting over cores made pyradiomics' GLCM MCC (small eigenvalue problems) many times
slower. Results come back in task order; a crashed worker fails only the cases it held.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

import SimpleITK as sitk
import threadpoolctl
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

Task = TypeVar("Task")
Result = TypeVar("Result")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_cases(
    work: Callable[[Task], Result],
    tasks: Sequence[Task],
    crashed: Callable[[Task], Result],
    workers: int,
    description: str,
    show_progress: bool = True,
    shares: Sequence[float] | None = None,
) -> list[Result]:
    """`work(task)` for every task under a progress bar; `crashed(task)` if its worker died.

    `shares` is each task's part of a case on the bar (default: a whole case each).
    `workers == 1` runs here, with the same single ITK and BLAS thread as a pool worker:
    ITK's parallel reductions round differently per thread count, and values must not
    depend on `workers`.
    """
    shares = [1.0] * len(tasks) if shares is None else list(shares)
    with Progress(
        *Progress.get_default_columns(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not show_progress,
    ) as progress:
        bar = progress.add_task(description, total=round(sum(shares)))
        done = 0.0

        def advance(index: int) -> None:
            nonlocal done
            done += shares[index]
            progress.update(bar, completed=round(done, 9))  # parts of a case add up to 1

        if workers == 1 or len(tasks) <= 1:
            return _run_here(work, tasks, advance)
        return _run_pool(work, tasks, crashed, workers, advance)


def single_thread() -> None:
    """Pool initializer: one thread for every native library of this process."""
    for variable in _THREAD_VARIABLES:
        os.environ[variable] = "1"  # for native libraries loaded after this point
    threadpoolctl.threadpool_limits(1)  # for BLAS/OpenMP already loaded with numpy
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _run_here(work, tasks, advance: Callable[[int], None]) -> list:
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        with threadpoolctl.threadpool_limits(1):
            results = []
            for index, task in enumerate(tasks):
                results.append(work(task))
                advance(index)
            return results
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _run_pool(work, tasks, crashed, workers: int, advance: Callable[[int], None]) -> list:
    with ProcessPoolExecutor(workers, initializer=single_thread) as pool:
        futures = [pool.submit(work, task) for task in tasks]
        index = {future: position for position, future in enumerate(futures)}
        try:
            for future in as_completed(futures):
                advance(index[future])
        except KeyboardInterrupt:
            pool.shutdown(cancel_futures=True)
            raise
    return [_collect(future, task, crashed) for future, task in zip(futures, tasks, strict=True)]


def _collect(future: Future, task, crashed):
    try:
        return future.result()
    except BrokenProcessPool:
        return crashed(task)
