# The installed entry point loads this plugin too; naming it here makes a checkout whose venv
# predates the entry point (pip install -e . not rerun) work all the same.
pytest_plugins = ["sagactl.testing.plugin"]
