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

# What a trial's child sets before it loads anything (local.py): transformers reads some at import, which
# happens here, once, for every child.
for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false"),
                      ("TRANSFORMERS_VERBOSITY", "error"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1")):
    os.environ.setdefault(_name, _value)

import numpy  # noqa: E402,F401
import pandas  # noqa: E402,F401
import psutil  # noqa: E402,F401
import torch  # noqa: E402,F401

from .. import trial  # noqa: E402,F401
from ..core import cache, data, models, reviews, train  # noqa: E402,F401
from ..meters import Meters, flops  # noqa: E402,F401
from . import budget, local  # noqa: E402,F401

# The rest only saves time: a failure here must not take the server down (every trial would then fail to
# start), so it is left for the trial to meet, and report, itself.
try:
    import sklearn.model_selection  # noqa: F401  (the stratified split, core/data.py)
    import transformers  # noqa: F401

    # transformers loads its classes lazily, on first use: these are what the embedded and `random:` models use.
    from transformers import (  # noqa: F401
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertForSequenceClassification,
        BertModel,
        BertTokenizerFast,
        DistilBertForSequenceClassification,
        RobertaForSequenceClassification,
    )
    from transformers.modeling_outputs import BaseModelOutputWithPooling  # noqa: F401
except Exception:  # pragma: no cover - a transformers without one of these classes
    pass

try:
    reviews.cached()  # the embedded review set, made once here rather than in every trial (0.6 s each)
except Exception:  # pragma: no cover
    pass

# Everything loaded so far lives as long as the server: out of the garbage collector's sight (gc.freeze), so
# that a child's collections do not walk, and copy page by page, the millions of objects it inherited.
import gc  # noqa: E402

gc.collect()
gc.freeze()
