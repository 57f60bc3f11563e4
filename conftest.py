# The installed entry point loads this plugin too; naming it here makes a checkout whose venv
# predates the entry point (pip install -e . not rerun) work all the same.
pytest_plugins = ["sagactl.testing.plugin"]

import os  # noqa: E402

# pytest-xdist's workers inherit COLUMNS=80 and LINES=24 from execnet; Rich reads them once, when
# sagactl.cli.common makes its consoles at import, and every later `env={"COLUMNS": ...}` of a
# test is ignored. A plain `pytest` run has neither variable: make every run look like that one.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)
