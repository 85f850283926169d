"""Grid files: validation (one clear line per mistake) and expansion into trials with stable ids."""

from __future__ import annotations

import pytest

from harness.config import ConfigError, STRATEGIES, parse_grid
from harness.grid import expand

ISSUE_GRID = """
name = "quick"
[model]
name = "embedded:minilm-l6"     # hub id, local folder, embedded:minilm-l6, random:<shape>
max_length = 128
[data]
source = "embedded:reviews"     # embedded:reviews, a .csv/.tsv/.jsonl/.parquet path, or a hub dataset name
text_column = "text"
label_column = "label"
val_fraction = 0.1
seed = 324
[train]
epochs = 3
optimizer = "sgd"               # sgd | adamw
learning_rate = 0.005
[grid]
dataset_size = [200, 400]
batch_size = [8, 16]
frozen_layers = ["all", 4, 0]
device = ["cpu"]
[limits]
trial_timeout_s = 900
"""


def test_the_issue_grid_parses_as_written():
    cfg = parse_grid(ISSUE_GRID, "quick.toml")
    assert cfg.name == "quick"
    assert cfg.limits.trial_timeout_s == 900
    trials = expand(cfg)
    assert len(trials) == 2 * 2 * 3
    combos = {(t.params["dataset_size"], t.params["batch_size"], t.params["frozen_layers"]) for t in trials}
    assert len(combos) == 12
    t = trials[0]
    assert t.params["model"] == "embedded:minilm-l6"
    assert t.params["source"] == "embedded:reviews"
    assert t.params["data_seed"] == 324 and t.params["seed"] == 324
    assert t.params["val_fraction"] == 0.1


def test_trial_ids_are_stable_and_distinct():
    a = [t.trial_id for t in expand(parse_grid(ISSUE_GRID))]
    b = [t.trial_id for t in expand(parse_grid(ISSUE_GRID))]
    assert a == b
    assert len(set(a)) == len(a)
    changed = [t.trial_id for t in expand(parse_grid(ISSUE_GRID.replace("learning_rate = 0.005", "learning_rate = 0.01")))]
    assert not set(a) & set(changed)


def test_any_setting_can_be_swept_and_strategy_fills_switches():
    text = ISSUE_GRID.replace('device = ["cpu"]', 'device = ["cpu"]\nstrategy = ["lab", "fast"]\nlearning_rate = [0.005, 0.05]')
    trials = expand(parse_grid(text))
    assert len(trials) == 12 * 2 * 2
    for t in trials:
        for switch, value in STRATEGIES[t.params["strategy"]].items():
            assert t.params[switch] == value


def test_an_explicit_switch_wins_over_the_strategy():
    text = ISSUE_GRID.replace('learning_rate = 0.005', 'learning_rate = 0.005\nstrategy = "fast"\ncache_frozen = false')
    assert all(t.params["cache_frozen"] is False for t in expand(parse_grid(text)))


def test_repeats_vary_the_seed_only():
    trials = expand(parse_grid('repeats = 3\n' + ISSUE_GRID))
    assert len(trials) == 36
    first = [t for t in trials if t.params["dataset_size"] == 200 and t.params["batch_size"] == 8
             and t.params["frozen_layers"] == "all"]
    assert [t.repeat for t in first] == [0, 1, 2]
    assert [t.params["seed"] for t in first] == [324, 325, 326]
    assert len({t.trial_id for t in first}) == 3


def test_scalar_axes_in_sections_count_as_given():
    text = ISSUE_GRID.replace('batch_size = [8, 16]\n', '').replace('epochs = 3', 'epochs = 3\nbatch_size = 32')
    trials = expand(parse_grid(text))
    assert {t.params["batch_size"] for t in trials} == {32}


@pytest.mark.parametrize(
    "edit, expected",
    [
        (("epochs = 3", "epochs = 3\nwarmup = 1"), "[train] warmup: unknown key"),
        (("epochs = 3", 'epochs = "three"'), "[train] epochs"),
        (("batch_size = [8, 16]", "batch_size = []"), "[grid] batch_size: empty list"),
        (("batch_size = [8, 16]", ""), "[grid] batch_size: required axis is missing"),
        (("frozen_layers = [\"all\", 4, 0]", "frozen_layers = [\"some\"]"), "[grid] frozen_layers"),
        (("device = [\"cpu\"]", "device = [\"tpu\"]"), "[grid] device"),
        (("batch_size = [8, 16]", "batch_size = [8, -1]"), "[grid] batch_size"),
        (("batch_size = [8, 16]", "batch_size = [8, 16]\nbatch_sz = [1]"), "[grid] batch_sz: unknown setting"),
        (("val_fraction = 0.1", "val_fraction = 1.5"), "[data] val_fraction"),
        (("trial_timeout_s = 900", 'cpu_memory = "4 gigs"'), "cpu_memory"),
    ],
)
def test_mistakes_get_one_line_naming_file_and_key(edit, expected):
    old, new = edit
    with pytest.raises(ConfigError) as err:
        parse_grid(ISSUE_GRID.replace(old, new), "grids/bad.toml")
    msg = str(err.value)
    assert msg.startswith("grids/bad.toml: ")
    assert expected in msg
    assert "\n" not in msg
