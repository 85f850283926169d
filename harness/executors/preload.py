"""What the trial server imports once, so that each trial's child, forked from it, starts with it loaded.

The local executor starts trials from an idle server process (`multiprocessing`'s forkserver): the server
imports this module, then forks one fresh child per trial. A child shares nothing with other trials at
run time (its own process, memory and pipe); what it inherits is only this module's imports, paid once per
run instead of once per trial (about 4 s of torch and transformers on 2 cores, docs/performance.md).

Rules for what goes here:
- Imports only. Nothing that starts a thread (a forked child gets none of the server's threads, and a lock
  one of them held stays held), and nothing that touches CUDA: no `torch.cuda.is_available()`,
  `device_count()` or tensor on a GPU. The CUDA driver does not survive a fork; a server that initialised it
  would make every CUDA trial fail ("Cannot re-initialize CUDA in forked subprocess").
  `tests/test_trial_server.py` imports this module with CUDA's entry points trapped.
- Optional libraries (datasets, peft, pynvml) are left to the trial: a server must start without them.
"""

from __future__ import annotations

import os

# The server's own pid: a child compares its parent with it to learn whether the server died before the
# child asked the kernel to kill it with its parent (executors/local.py).
SERVER_PID = os.getpid()

import numpy  # noqa: E402,F401
import pandas  # noqa: E402,F401
import psutil  # noqa: E402,F401
import torch  # noqa: E402,F401
import transformers  # noqa: E402,F401

# transformers loads its classes lazily, on first use; these are what the embedded and `random:` models use.
from transformers import (  # noqa: E402,F401
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertForSequenceClassification,
    BertModel,
    BertTokenizerFast,
    DistilBertForSequenceClassification,
    RobertaForSequenceClassification,
)
from transformers.modeling_outputs import BaseModelOutputWithPooling  # noqa: E402,F401

from ..core import budget, cache, data, models, reviews, train, trial  # noqa: E402,F401
from ..meters import Meters, record  # noqa: E402,F401
from ..meters import flops  # noqa: E402,F401
from . import local  # noqa: E402,F401

reviews.cached()  # the embedded review set, made once here rather than in every trial (0.6 s each)

try:  # scikit-learn: the stratified split (core/data.py); optional here, as everything else is
    import sklearn.model_selection  # noqa: E402,F401
except ImportError:  # pragma: no cover
    pass
