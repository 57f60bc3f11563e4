# The installed entry point loads this plugin too; naming it here makes a checkout whose venv
# predates the entry point (pip install -e . not rerun) work all the same.
pytest_plugins = ["sagactl.testing.plugin"]

import os  # noqa: E402

import pytest  # noqa: E402

# pytest-xdist's workers inherit COLUMNS=80 and LINES=24 from execnet; Rich reads them once, when
# sagactl.cli.common makes its consoles at import, and every later `env={"COLUMNS": ...}` of a
# test is ignored. A plain `pytest` run has neither variable: make every run look like that one.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


# --- Parallel runs (pytest-xdist, `-n 4` in pyproject's addopts; `-n 0` runs in this process) ---
# Most tests start a system of their own and spend their time waiting on its processes. Four
# workers: since those processes are forks (sagactl/system/forking.py) four leave the two cores
# idle about a third of the time, but six starved the tutorial's sequential commands under CI
# (a `timeout 5` around `sagactl participant run` expired before it printed anything). A module whose tests share a module-scoped fixture (one system
# for its read-only tests) runs whole on one worker, or each worker would start that system
# again; every other test is scheduled on its own. The list is checked at collection: a module
# that starts sharing a fixture and is missing here fails the run instead of slowing it down.
SHARED_MODULES = {
    "test_cli.py", "test_deadletters.py", "test_logs_and_live.py", "test_participant_cli.py",
    "test_secured.py", "test_tail.py", "test_trace.py",
}
# The longest work units go out first, so no worker is left with one at the end.
SLOW_FIRST = ("test_chaos.py", "test_soak.py", "test_tutorial.py", "test_prometheus_demo.py", "test_readme_examples.py",
              "test_cluster.py", "test_replicas.py", "test_bench.py")


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):  # type: ignore[no-untyped-def]
    from xdist.scheduler import LoadScopeScheduling

    class SharedModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid.split("::", 1)[0] if _module(nodeid) in SHARED_MODULES else nodeid

    return SharedModulesTogether(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    stale = sorted({
        _module(item.nodeid) for item in items
        if _module(item.nodeid) not in SHARED_MODULES
        and any(defs and defs[-1].scope == "module" for defs in item._fixtureinfo.name2fixturedefs.values())
    })
    if stale:
        raise pytest.UsageError(f"conftest.py: add {', '.join(stale)} to SHARED_MODULES (they share a module-scoped fixture)")
    shared_or_slow = SHARED_MODULES.union(SLOW_FIRST)
    rank = {name: n for n, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: (0 if _module(item.nodeid) in shared_or_slow else 1, rank.get(_module(item.nodeid), len(rank))))
