"""The CLI quiets the libraries it loads without importing them at start-up.

Importing transformers and datasets only to switch off their progress bars and advisories
cost 1.3 s of every command's start; the switches now go through the environment, which each
library reads when it is first imported. Runs in a fresh interpreter, with none of those
variables set, as a user's shell would have it.
"""
import os
import subprocess
import sys

PROBE = """
import sys
from iteralign.cli import _setup_output
_setup_output(verbose=False)
assert "datasets" not in sys.modules, "datasets imported at start-up"
import transformers
from transformers.utils import logging as hf_logging
print(hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity() == hf_logging.ERROR)
import datasets
print(datasets.is_progress_bar_enabled())
"""


def test_library_progress_bars_and_advisories_are_off_without_importing_them_first():
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "False"]
