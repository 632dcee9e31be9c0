"""The fuzz drivers: a seeded mutation loop, or libFuzzer's coverage-guided one (atheris).

Both run every input through `Harness` with a time limit per input (a hang is a finding)
and sample memory as they go: the process's RSS and, from halfway (`--tracemalloc`), what
tracemalloc counts.  Memory is judged over the second half of the run, once caches and the
corpus have filled: a leak of even a few hundred bytes per input shows there as growth that
does not stop.

The built-in loop (`run_builtin`) needs nothing but the project: it replays the seeds, then
mutates inputs from its corpus (or makes random structured ones), and keeps an input that
made the vswitch behave in a new way (something new on its outputs: a message type, an
error type and code, a pswitch written to), a coarse feedback where no coverage is
measured.  With atheris installed
(`pip install atheris`: libFuzzer in a wheel), `run_atheris` lets libFuzzer choose inputs
by the Python lines and branches they reach, with these mutations offered beside its own.
Findings are written under `artifacts` as `finding-<hash>.bin`; `--reproduce FILE` runs
one again with its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import random
import resource
import signal
import sys
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a run starts: atheris instruments them as they load
    from tenantvisor.bench.fuzz.harness import Harness

TIME_LIMIT = 1.0  # CPU seconds one input may take (they take well under a millisecond)
WALL_FACTOR = 10  # and wall-clock seconds, this many times more (a machine busy elsewhere
# stretches an input's wall time, not its CPU time: a 1M run niced under other work once
# reported a "hang" that took 1.8 s of wall time and reproduced in a millisecond)
MEMORY_SAMPLES = 50  # memory samples over a run
RSS_GROWTH_LIMIT = 64 << 20  # bytes of RSS growth over the second half that fail a run
TRACED_GROWTH_LIMIT = 16 << 20  # bytes tracemalloc may see grow over the second half
CORPUS_LIMIT = 2000  # inputs the built-in loop keeps (a full corpus replaces at random)


class Hang(BaseException):
    """An input ran past the time limit.  A BaseException, so that the catch-alls under
    test (`except Exception`) do not swallow it."""


@dataclass
class Report:
    """A run's counts, speed, memory and findings (by where they happened)."""

    engine: str
    inputs: int = 0
    seconds: float = 0.0
    closed: int = 0  # inputs whose connection was closed (malformed, unframeable)
    refused: int = 0  # inputs that got at least one OpenFlow ERROR
    slowest: float = 0.0  # seconds, the slowest input
    corpus: int = 0
    # (inputs, rss, traced): traced is -1 until tracemalloc starts
    memory: list[tuple[int, int, int]] = field(default_factory=list)
    findings: dict[str, str] = field(default_factory=dict)  # key -> first message
    artifacts: dict[str, str] = field(default_factory=dict)  # key -> file

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0

    def memory_growth(self) -> tuple[int, int]:
        """(RSS, traced) growth in bytes over the second half of the run: RSS from the
        middle sample to the last, traced memory from when tracing started (halfway)."""
        if len(self.memory) < 2:
            return 0, 0
        mid, last = self.memory[len(self.memory) // 2], self.memory[-1]
        traced = [t for _, _, t in self.memory if t >= 0]
        return last[1] - mid[1], traced[-1] - traced[0] if traced else 0

    def memory_problem(self) -> str | None:
        rss, traced = self.memory_growth()
        if rss > RSS_GROWTH_LIMIT:
            return f"RSS grew {rss >> 20} MiB over the second half of the run"
        if traced > TRACED_GROWTH_LIMIT:
            return f"traced memory grew {traced >> 20} MiB over the second half of the run"
        return None

    def summary(self) -> dict[str, Any]:
        rss, traced = self.memory_growth()
        return {
            "engine": self.engine,
            "inputs": self.inputs,
            "seconds": round(self.seconds, 1),
            "inputs_per_second": round(self.rate),
            "closed": self.closed,
            "refused": self.refused,
            "slowest_ms": round(self.slowest * 1000, 2),
            "corpus": self.corpus,
            "rss_mib": round(self.memory[-1][1] / (1 << 20), 1) if self.memory else None,
            "rss_growth_second_half_mib": round(rss / (1 << 20), 2),
            "traced_growth_second_half_mib": round(traced / (1 << 20), 2),
            "memory_problem": self.memory_problem(),
            "findings": self.findings,
            "artifacts": self.artifacts,
        }


def rss() -> int:
    """Resident set size of this process in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def finding_key(exc: BaseException) -> str:
    """Where a finding happened: the innermost tenantvisor frame of its cause (one bug, one
    key however many inputs reach it), or its message when it has no cause."""
    from tenantvisor.bench.fuzz.harness import Finding

    cause = exc.__cause__ if isinstance(exc, Finding) and exc.__cause__ is not None else exc
    if isinstance(cause, Finding | Hang) and cause.__cause__ is None:
        return f"{type(cause).__name__}: {str(cause).split(':')[0][:80]}"
    frames = [
        f for f in traceback.extract_tb(cause.__traceback__)
        if "tenantvisor" in f.filename and "bench/fuzz" not in f.filename
    ]  # fmt: skip
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(cause).__name__} at {where}"


def describe(exc: BaseException) -> str:
    cause = exc.__cause__
    text = f"{exc}"
    if cause is not None:
        text += "\n" + "".join(traceback.format_exception(cause)[-12:])
    return text


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang("input ran over its time limit")


def arm(limit: float) -> None:
    """Per input: SIGPROF after `limit` seconds of the process's CPU time (a loop that never
    ends spends it), SIGALRM after WALL_FACTOR times as many seconds of wall time (a wait
    that never ends does not); 0 disarms both."""
    signal.setitimer(signal.ITIMER_PROF, limit)
    signal.setitimer(signal.ITIMER_REAL, limit * WALL_FACTOR)


def _on_alarms() -> tuple[Any, Any]:
    return signal.signal(signal.SIGALRM, _alarm), signal.signal(signal.SIGPROF, _alarm)


@contextlib.contextmanager
def time_limit() -> Iterator[None]:
    """Within the block, the alarms `arm` sets raise Hang in the main thread, wherever the
    input is stuck."""
    old = _on_alarms()
    try:
        yield
    finally:
        arm(0)
        signal.signal(signal.SIGALRM, old[0])
        signal.signal(signal.SIGPROF, old[1])


class _Runner:
    """Runs inputs through one harness and books their outcomes in a report."""

    def __init__(self, report: Report, limit: float, artifacts: Path | None) -> None:
        from tenantvisor.bench.fuzz.harness import Finding, Harness

        self.finding = Finding
        self.harness: Harness = Harness()
        self.report = report
        self.limit = limit
        self.artifacts = artifacts
        self.features: set[tuple[int, ...]] = set()  # every behaviour seen (signatures)

    def close(self) -> None:
        self.harness.close()

    def one(self, data: bytes) -> bool:
        """Run one input; True if it behaved in a way not seen before (keep it)."""
        rep = self.report
        rep.inputs += 1
        start = time.perf_counter()
        arm(self.limit)
        try:
            outcome = self.harness.run(data)
        except self.finding as exc:
            self._found(exc, data)
            return False
        except Hang as exc:
            self.harness.reset_loop()
            self._found(exc, data)
            return False
        finally:
            arm(0)
            rep.slowest = max(rep.slowest, time.perf_counter() - start)
        rep.closed += outcome.closed
        rep.refused += outcome.errors > 0
        if outcome.signature <= self.features:
            return False
        self.features |= outcome.signature
        return True

    def _found(self, exc: BaseException, data: bytes) -> None:
        key = finding_key(exc)
        rep = self.report
        if key in rep.findings:
            return
        rep.findings[key] = describe(exc)
        if self.artifacts is not None:
            self.artifacts.mkdir(parents=True, exist_ok=True)
            path = self.artifacts / f"finding-{hashlib.sha1(data).hexdigest()[:16]}.bin"
            path.write_bytes(data)
            rep.artifacts[key] = str(path)

    def sample_memory(self, trace_from: int | None) -> None:
        """A memory sample; tracemalloc starts at input `trace_from` (None: never), since
        only the second half is judged and tracing halves the speed."""
        gc.collect()
        if trace_from is not None and self.report.inputs >= trace_from:
            if not tracemalloc.is_tracing():
                tracemalloc.start()
            traced = tracemalloc.get_traced_memory()[0]
        else:
            traced = -1
        self.report.memory.append((self.report.inputs, rss(), traced))


def run_builtin(
    inputs: int,
    seed: int = 0,
    limit: float = TIME_LIMIT,
    artifacts: Path | None = None,
    trace_memory: bool = False,
    progress: Callable[[Report], None] | None = None,
) -> Report:
    """`inputs` inputs: the seeds first, then mutations of the corpus (3 in 4) and random
    structured inputs, deterministic for a `seed`."""
    from tenantvisor.bench.fuzz.corpus import mutate, random_input, seeds

    report = Report("builtin")
    rng = random.Random(seed)
    corpus = seeds()
    runner = _Runner(report, limit, artifacts)
    every = max(1, inputs // MEMORY_SAMPLES)
    trace_from = inputs // 2 if trace_memory else None
    start = time.perf_counter()
    try:
        with time_limit():
            for i in range(inputs):
                if i < len(corpus):
                    data = corpus[i]
                elif rng.random() < 0.75:
                    data = mutate(rng, rng.choice(corpus), corpus)
                else:
                    data = random_input(rng)
                if runner.one(data) and i >= len(corpus):
                    if len(corpus) < CORPUS_LIMIT:
                        corpus.append(data)
                    else:
                        corpus[rng.randrange(CORPUS_LIMIT)] = data
                if (i + 1) % every == 0:
                    runner.sample_memory(trace_from)
                    report.seconds = time.perf_counter() - start
                    report.corpus = len(corpus)
                    if progress is not None:
                        progress(report)
    finally:
        report.seconds = time.perf_counter() - start
        report.corpus = len(corpus)
        runner.close()
        tracemalloc.stop()
    return report


def run_atheris(
    inputs: int,
    workdir: Path,
    limit: float = TIME_LIMIT,
    trace_memory: bool = False,
    progress: Callable[[Report], None] | None = None,
    done: Callable[[Report], int] | None = None,
) -> None:
    """libFuzzer through atheris, coverage-guided over every Python line it reaches, for
    `inputs` inputs; its corpus and findings live in `workdir`.  libFuzzer ends the process:
    `done(report)` is called first and its value is the exit status."""
    import atheris

    # the project's modules load here, instrumented for libFuzzer's coverage (lines and
    # branches of tenantvisor only: os-ken and the standard library are not what is tested)
    with atheris.instrument_imports(include=["tenantvisor"]):
        from tenantvisor.bench.fuzz.corpus import MAX_INPUT, mutate, random_input, seeds

    corpus_dir = workdir / "corpus"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    pool = seeds()
    if not any(corpus_dir.iterdir()):
        for data in pool:
            (corpus_dir / hashlib.sha1(data).hexdigest()).write_bytes(data)
    report = Report("atheris")
    runner = _Runner(report, limit, workdir / "findings")
    every = max(1, inputs // MEMORY_SAMPLES)
    trace_from = inputs // 2 if trace_memory else None
    start = time.perf_counter()

    def test_one(data: bytes) -> None:
        if runner.one(data) and len(pool) < CORPUS_LIMIT:
            pool.append(data)  # donors for splices
        n = report.inputs
        if n % every == 0:
            runner.sample_memory(trace_from)
            report.seconds = time.perf_counter() - start
            report.corpus = sum(1 for _ in corpus_dir.iterdir())
            if progress is not None:
                progress(report)
        if n >= inputs:
            report.seconds = time.perf_counter() - start
            report.corpus = sum(1 for _ in corpus_dir.iterdir())
            status = done(report) if done is not None else 0
            sys.stdout.flush()
            os._exit(status)

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            return bytes(atheris.Mutate(data, max_size))
        if rng.random() < 0.1:
            return random_input(rng)[:max_size]
        return mutate(rng, data, pool)[:max_size]

    _on_alarms()  # libFuzzer's own timeout is off (-timeout=0)
    argv = [
        sys.argv[0], str(corpus_dir), f"-runs={inputs + len(pool) + 1}",
        f"-max_len={MAX_INPUT}", "-timeout=0", "-rss_limit_mb=4096", "-print_final_stats=1",
        f"-artifact_prefix={workdir}/", "-print_pcs=0", "-reload=0",
    ]  # fmt: skip
    atheris.Setup(argv, test_one, custom_mutator=mutator)
    atheris.Fuzz()


def reproduce(paths: list[Path]) -> int:
    """Run saved inputs again; print each one's finding with its traceback."""
    from tenantvisor.bench.fuzz.harness import Finding, Harness

    harness = Harness()
    status = 0
    try:
        for path in paths:
            try:
                with time_limit():
                    arm(TIME_LIMIT * 10)
                    outcome = harness.run(path.read_bytes())
                print(f"{path}: no finding ({outcome})")
            except (Finding, Hang) as exc:
                status = 1
                print(f"{path}: {finding_key(exc)}\n{describe(exc)}")
    finally:
        harness.close()
    return status


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tenantvisor.bench.fuzz",
        description="Fuzz the tenant-facing decoder and vswitch message handling.",
    )
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--engine", choices=("auto", "atheris", "builtin"), default="auto",
                    help="auto: atheris (coverage-guided) if installed, else builtin")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="builtin engine's random seed")
    ap.add_argument("--time-limit", type=float, default=TIME_LIMIT, help="seconds per input")
    ap.add_argument("--workdir", type=Path, default=Path(".fuzz"),
                    help="corpus and findings (finding-*.bin)")  # fmt: skip
    ap.add_argument("--tracemalloc", action="store_true",
                    help="trace Python allocations over the second half, beside RSS")  # fmt: skip
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("--reproduce", type=Path, nargs="+", help="run saved inputs again")
    args = ap.parse_args(argv)
    if args.reproduce:
        return reproduce(args.reproduce)
    args.workdir.mkdir(parents=True, exist_ok=True)

    def progress(r: Report) -> None:
        rss_now = r.memory[-1][1] >> 20 if r.memory else 0
        print(f"fuzz: {r.inputs} inputs, {r.rate:.0f}/s, {len(r.findings)} findings, "
              f"corpus {r.corpus}, rss {rss_now} MiB", flush=True)  # fmt: skip

    def done(r: Report) -> int:
        summary = r.summary()
        print(json.dumps(summary, indent=2))
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
        return 1 if r.findings or r.memory_problem() else 0

    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "builtin"
            print("fuzz: atheris not installed: the built-in mutation loop", flush=True)
    if engine == "atheris":
        run_atheris(args.inputs, args.workdir, args.time_limit, args.tracemalloc, progress, done)
        return 0  # not reached: libFuzzer exits
    report = run_builtin(args.inputs, args.seed, args.time_limit, args.workdir / "findings",
                         args.tracemalloc, progress)  # fmt: skip
    return done(report)
