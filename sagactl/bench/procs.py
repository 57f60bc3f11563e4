"""CPU time and peak memory of the processes a bench run involves."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil


@dataclass
class ProcessUsage:
    name: str
    pid: int
    cpu_s: float  # user + system CPU seconds spent during the measured interval
    peak_rss_mb: float  # the process's peak resident set size (VmHWM) so far

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "cpu_s": round(self.cpu_s, 3), "peak_rss_mb": round(self.peak_rss_mb, 1)}


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _peak_rss_mb(process: psutil.Process) -> float:
    try:
        with open(f"/proc/{process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return process.memory_info().rss / 2**20


class UsageMeter:
    """Snapshot CPU times at `start`, report the difference and the peak RSS at `stop`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._processes = {}
        for name, pid in pids.items():
            try:
                self._processes[name] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                continue
        self._start: dict[str, float] = {}

    @classmethod
    def with_generator(cls, pids: dict[str, int]) -> "UsageMeter":
        return cls({**pids, "generator": os.getpid()})

    def start(self) -> None:
        self._start = {name: _cpu(p) for name, p in self._processes.items() if p.is_running()}

    def stop(self) -> list[ProcessUsage]:
        usage = []
        for name, process in self._processes.items():
            try:
                cpu = _cpu(process) - self._start.get(name, 0.0)
                usage.append(ProcessUsage(name, process.pid, cpu, _peak_rss_mb(process)))
            except psutil.NoSuchProcess:
                continue
        return usage
