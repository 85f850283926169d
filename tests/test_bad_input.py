"""Bad input never gets a traceback: one line naming the file and the key or row, exit code 2, no run folder.

The table below runs `harness.cli.main([...])` in-process (fast); a few of its cases run again as real
`python -m harness ...` subprocesses to prove that nothing else (warnings, progress bars, tracebacks) reaches
the user's terminal. A property-based test throws random values at every grid key: the result is either a
valid config or a ConfigError, never another exception.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grid_helpers import dumps_toml, tiny_csv, tiny_grid, tiny_grid_doc
from harness.cli import main
from harness.config import (
    SECTIONS,
    ConfigError,
    CostSection,
    GridFile,
    LimitsSection,
    ReportSection,
    SearchSection,
    flat_names,
    parse_grid,
)
from harness.grid import expand

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------
@dataclass
class Ctx:
    tmp: Path
    data: Path  # a good tiny CSV
    out: Path   # where --out points; must not exist afterwards

    def grid(self, filename: str = "grid.toml", **overrides) -> Path:
        overrides.setdefault("data__source", str(self.data))
        return tiny_grid(self.tmp, filename, **overrides)

    def run(self, grid: Path, *extra: str) -> list[str]:
        return ["run", str(grid), "--out", str(self.out), "--no-report", *extra]

    def csv(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def model_dir(self, name: str, files: dict[str, str]) -> Path:
        folder = self.tmp / name
        folder.mkdir()
        for fname, content in files.items():
            (folder / fname).write_text(content, encoding="utf-8")
        return folder


# A builder gets the context and returns (argv, strings the error line must contain).
Builder = Callable[[Ctx], tuple[list[str], list[str]]]
ROWS = "".join(f"text number {i},{i % 2}\n" for i in range(40))
BERT_CONFIG = json.dumps({"model_type": "bert", "num_hidden_layers": 2, "max_position_embeddings": 512})


def grid_case(needles: list[str], **overrides) -> Builder:
    def build(c: Ctx) -> tuple[list[str], list[str]]:
        g = c.grid(**overrides)
        return c.run(g), [str(g), *needles]
    return build


def data_case(content: str | bytes, needles: list[str], suffix: str = ".csv", **overrides) -> Builder:
    def build(c: Ctx) -> tuple[list[str], list[str]]:
        d = c.csv(f"data{suffix}", content)
        g = c.grid(data__source=str(d), **overrides)
        return c.run(g), [str(g), "[data] source", str(d), *needles]
    return build


def model_case(files: dict[str, str] | None, needles: list[str], **overrides) -> Builder:
    def build(c: Ctx) -> tuple[list[str], list[str]]:
        if files is None:  # the model "folder" is a file
            m = c.csv("model.bin", "not a folder")
        else:
            m = c.model_dir("model", files)
        g = c.grid(model__name=str(m), **overrides)
        return c.run(g), [str(g), "[model] name", str(m), *needles]
    return build


def raw_grid_case(text: str | bytes, needles: list[str]) -> Builder:
    def build(c: Ctx) -> tuple[list[str], list[str]]:
        g = c.csv("grid.toml", text)
        return c.run(g), [str(g), *needles]
    return build


def argv_case(argv: Callable[[Ctx], list[str]], needles: list[str]) -> Builder:
    def build(c: Ctx) -> tuple[list[str], list[str]]:
        return argv(c), needles
    return build


def _resume_other_grid(c: Ctx) -> tuple[list[str], list[str]]:
    run_dir = c.tmp / "old-run"
    run_dir.mkdir()
    (run_dir / "grid.toml").write_text('name = "something else"\n', encoding="utf-8")
    (run_dir / "trials.jsonl").write_text("", encoding="utf-8")
    g = c.grid()
    return ["run", str(g), "--resume", str(run_dir), "--no-report"], [str(g), "differs", str(run_dir)]


def _resume_missing(c: Ctx) -> tuple[list[str], list[str]]:
    g = c.grid()
    return ["run", str(g), "--resume", str(c.out), "--no-report"], [str(c.out), "--resume expects a run folder"]


def _out_is_an_old_run(c: Ctx) -> tuple[list[str], list[str]]:
    run_dir = c.tmp / "old-run"
    run_dir.mkdir()
    (run_dir / "trials.jsonl").write_text('{"trial_id": "x", "status": "ok"}\n', encoding="utf-8")
    g = c.grid()
    return ["run", str(g), "--out", str(run_dir), "--no-report"], [str(run_dir), "already holds", "--resume"]


def _out_is_file(c: Ctx) -> tuple[list[str], list[str]]:
    f = c.csv("taken", "a file")
    g = c.grid()
    return ["run", str(g), "--out", str(f), "--no-report"], [str(f), "is a file"]


def _out_under_file(c: Ctx) -> tuple[list[str], list[str]]:
    f = c.csv("taken", "a file")
    g = c.grid()
    return ["run", str(g), "--out", str(f / "run"), "--no-report"], [str(f / "run"), "not writable"]


CASES: dict[str, Builder] = {
    # -- grid files: types, ranges, empty lists, unknown keys ------------------------------------------
    "wrong type (string for int)": grid_case(["[train] epochs", "expected a whole number", "got '3'"], train__epochs="3"),
    "wrong type (string for float)": grid_case(["[train] learning_rate", "got 'fast'"], train__learning_rate="fast"),
    "wrong type (bool for int) in an axis": grid_case(["[grid] dataset_size", "expected a whole number", "True"],
                                                      grid__dataset_size=[True]),
    "wrong type (table for a section)": grid_case(["[model]", "expected a table"], model=5),
    "negative learning rate": grid_case(["[train] learning_rate", "greater than 0", "-1"], train__learning_rate=-1),
    "negative dataset size": grid_case(["[grid] dataset_size", "-5"], grid__dataset_size=[-5]),
    "huge epochs": grid_case(["[train] epochs", "at most 10000"], train__epochs=10**15),
    "huge integer past 64 bits": grid_case(["[grid] dataset_size", "at most"], grid__dataset_size=[2**70]),
    "NaN learning rate": grid_case(["[train] learning_rate", "finite", "nan"], train__learning_rate=float("nan")),
    "infinite timeout": grid_case(["[limits] trial_timeout_s", "finite"], limits__trial_timeout_s=float("inf")),
    "empty axis list": grid_case(["[grid] batch_size", "empty list"], grid__batch_size=[]),
    "value twice in an axis": grid_case(["[grid] batch_size", "twice"], grid__batch_size=[4, 4]),
    "unknown key in a section": grid_case(["[train] epoch", "unknown key"], train__epoch=3),
    "unknown section": grid_case(["foo", "unknown key"], foo={"a": 1}),
    "unknown setting in [grid]": grid_case(["[grid] bogus", "unknown setting", "expected one of"], grid__bogus=[1]),
    "newline in an unknown key stays on one line": grid_case(["[grid] a\\nb", "unknown setting"], **{"grid__a\nb": [1]}),
    "missing name": grid_case(["name", "required key is missing"], name=None),
    "empty name": grid_case(["name", "non-empty"], name=" "),
    "missing required axis": grid_case(["[grid] device", "required axis is missing"], grid__device=None),
    "unknown optimizer": grid_case(["[train] optimizer", "'sgd' or 'adamw'", "'adam'"], train__optimizer="adam"),
    "unknown device": grid_case(["[grid] device", '"cpu", "cuda" or "cuda:N"', "'tpu'"], grid__device=["tpu"]),
    "frozen_layers not a count": grid_case(["[grid] frozen_layers", '"all" or a layer count'], grid__frozen_layers=["none"]),
    "frozen_layers deeper than the model": grid_case(["[grid] frozen_layers", "has 2 layers"], grid__frozen_layers=[5]),
    "max_length beyond the model's positions": grid_case(["[model] max_length", "512 positions"], model__max_length=4096),
    "dataset_size larger than the data": grid_case(["[grid] dataset_size", "larger than the 60 usable rows"],
                                                   grid__dataset_size=[61]),
    "batch larger than the training rows": grid_case(["[grid] batch_size", "larger than the 36 training rows"],
                                                     grid__batch_size=[64]),
    "val_rows beyond the data": grid_case(["[data] val_rows", "need 70 rows", "has 60 usable rows"],
                                          data__val_rows=30, grid__dataset_size=[40]),
    "val_rows not a count": grid_case(["[data] val_rows", "a whole number", "'many'"], data__val_rows="many"),
    "memory budget not a size": grid_case(["[limits] cpu_memory", '"4GiB"', "'lots'"], limits__cpu_memory="lots"),
    "too many trials": grid_case(["[grid]", "trials; expected at most 100000"], repeats=1000,
                                 grid__batch_size=list(range(1, 12)), grid__learning_rate=[0.1 * i for i in range(1, 11)]),
    "not TOML": raw_grid_case('name = "x"\n[train\nepochs = 3\n', ["not valid TOML", "line 2"]),
    "grid file not UTF-8": raw_grid_case(b'name = "caf\xe9"\n', ["line 1", "not UTF-8"]),
    "missing grid file": argv_case(lambda c: ["run", str(c.tmp / "nope.toml"), "--out", str(c.out)],
                                   ["nope.toml", "no such grid file"]),
    "grid file is a folder": argv_case(lambda c: ["run", str(c.tmp), "--out", str(c.out)], ["not a file"]),
    # -- data files ------------------------------------------------------------------------------------
    "data file missing": grid_case(["[data] source", "no such data file"], data__source="/nonexistent/reviews.csv"),
    "data file empty": data_case("", ["the file is empty"]),
    "data file header only": data_case("text,label\n", ["no rows (only a header)"]),
    "NaN label": data_case("text,label\n" + ROWS + "a stray row,\n", ["'label' is empty or NaN in data row 41"]),
    "NaN label spelled out (tsv)": data_case("text\tlabel\n" + ROWS.replace(",", "\t") + "x\tNaN\n",
                                             ["data row 41", "NaN"], suffix=".tsv"),
    "infinite label": data_case("text,label\n" + ROWS + "x,inf\n", ["'label' is inf in data row 41"]),
    "unexpected label (a typo)": data_case("text,label\n" + ROWS + "x,positve\n",
                                           ["'label' is 'positve' only in data row 41", "at least 2 rows"]),
    "fractional label": data_case("text,label\n" + ROWS + "x,0.5\n", ["'label' is 0.5 in data row 41", "class label"]),
    "single class": data_case("text,label\n" + "".join(f"t {i},1\n" for i in range(40)), ["single class"]),
    "every text empty": data_case("text,label\n" + "".join(f",{i % 2}\n" for i in range(40)), ["empty 'text'"]),
    "megabyte-long text": data_case("text,label\n" + ROWS + "x" * 1_100_000 + ",1\n",
                                    ["'text' in data row 41 has 1100000 characters", "at most 1000000"]),
    "non-UTF-8 bytes": data_case(("text,label\n" + ROWS).encode() + b"caf\xe9 au lait,1\n",
                                 ["line 42", "0xe9 is not UTF-8", "expected UTF-8"]),
    "text column missing": data_case("review,label\n" + ROWS, ["text_column 'text' is not a column", "review, label"]),
    "unknown file type": data_case("text,label\n" + ROWS, ["unknown file type '.txt'"], suffix=".txt"),
    "corrupt parquet": data_case(b"PAR1 not really", ["cannot be read as parquet"], suffix=".parquet"),
    "broken jsonl": data_case('{"text": "a", "label": 1}\n{"text": \n', ["line 2: not valid JSON", "one JSON object per line"], suffix=".jsonl"),
    # -- models ----------------------------------------------------------------------------------------
    "unknown random shape": grid_case(["[model] name", "random:nope", "unknown random shape", "bert-tiny"],
                                      model__name="random:nope"),
    "unknown embedded model": grid_case(["[model] name", "expected embedded:minilm-l6"], model__name="embedded:gpt"),
    "hub id not available offline": grid_case(["[model] name", "nobody/no-such-model", "not in the local hub cache",
                                               "HF_HUB_OFFLINE is set", "hf download nobody/no-such-model"],
                                              model__name="nobody/no-such-model"),
    "control characters in a model name": grid_case(["[model] name", "x\\ny\\x1b[2J"], model__name="x\ny\x1b[2J"),
    "model folder without config": model_case({}, ["no config.json"]),
    "model folder without weights": model_case({"config.json": BERT_CONFIG}, ["no weights", "model.safetensors"]),
    "model folder with pickled weights only": model_case(
        {"config.json": BERT_CONFIG, "pytorch_model.bin": "pickle"},
        ["pytorch_model.bin", "arbitrary code", "allow_pickle = true", "safetensors"]),
    "model folder with a broken config": model_case({"config.json": "{", "model.safetensors": ""}, ["not valid JSON"]),
    "model path is a file": model_case(None, ["not a folder"]),
    "model folder with garbage safetensors": model_case({"config.json": BERT_CONFIG, "model.safetensors": "<html>oops</html>"},
                                                        ["model.safetensors is not a readable safetensors file"]),
    "model folder of a vision model": model_case(
        {"config.json": json.dumps({"model_type": "vit", "architectures": ["ViTModel"]}), "model.safetensors": ""},
        ["model type 'vit'", "no sequence-classification head"]),
    # -- command line ----------------------------------------------------------------------------------
    "no command": argv_case(lambda c: [], ["required: command", "harness --help"]),
    "run without a grid": argv_case(lambda c: ["run"], ["required: grid", "harness run --help"]),
    "unknown command": argv_case(lambda c: ["frob"], ["invalid choice: 'frob'"]),
    "unknown option": argv_case(lambda c: ["run", str(c.grid()), "--frob"], ["unrecognized arguments: --frob"]),
    "workers not a number": argv_case(lambda c: ["run", str(c.grid()), "--workers", "x"], ["--workers", "'x'"]),
    "workers zero": argv_case(lambda c: ["run", str(c.grid()), "--workers", "0"], ["--workers", "1 to 256"]),
    "--out and --resume together": argv_case(
        lambda c: ["run", str(c.grid()), "--out", str(c.out), "--resume", str(c.out)], ["--out and --resume"]),
    "--resume of a folder that is not a run": _resume_missing,
    "--resume with a different grid": _resume_other_grid,
    "--out of an earlier run": _out_is_an_old_run,
    "--out is a file": _out_is_file,
    "--out under a file": _out_under_file,
    "report of a folder that is not a run": argv_case(lambda c: ["report", str(c.tmp)], ["not a run folder"]),
}

# --------------------------------------------------------------------------------------------------
# Round two (issue 15): the classes a hostile new user still found, several inputs per class
# --------------------------------------------------------------------------------------------------
def parquet_case(columns: dict[str, list], needles: list[str], **overrides) -> Builder:
    def build(c: Ctx) -> tuple[list[str], list[str]]:
        import pandas as pd

        d = c.tmp / "data.parquet"
        pd.DataFrame(columns).to_parquet(d)
        g = c.grid(data__source=str(d), **overrides)
        return c.run(g), [str(g), "[data] source", str(d), *needles]
    return build


def _fifo(c: Ctx) -> tuple[list[str], list[str]]:
    d = c.tmp / "pipe.csv"
    os.mkfifo(d)
    g = c.grid(data__source=str(d))
    return c.run(g), [str(g), "[data] source", str(d), "named pipe (FIFO)", "not a regular file"]


def _symlink_loop(c: Ctx) -> tuple[list[str], list[str]]:
    a, b = c.tmp / "a.csv", c.tmp / "b.csv"
    a.symlink_to(b)
    b.symlink_to(a)
    g = c.grid(data__source=str(a))
    return c.run(g), [str(g), "[data] source", str(a), "symbolic link loop"]


def _dangling_symlink(c: Ctx) -> tuple[list[str], list[str]]:
    a = c.tmp / "gone.csv"
    a.symlink_to(c.tmp / "moved-away.csv")
    g = c.grid(data__source=str(a))
    return c.run(g), [str(g), str(a), "symbolic link to", "moved-away.csv", "does not exist"]


def _folder_named_csv(c: Ctx) -> tuple[list[str], list[str]]:
    d = c.tmp / "folder.csv"
    d.mkdir()
    g = c.grid(data__source=str(d))
    return c.run(g), [str(g), str(d), "a folder; expected a data file"]


def compressed_case(suffix: str, compress: Callable[[bytes], bytes], what: str) -> Builder:
    def build(c: Ctx) -> tuple[list[str], list[str]]:
        d = c.csv(f"data{suffix}", compress(("text,label\n" + ROWS).encode()))
        g = c.grid(data__source=str(d))
        return c.run(g), [str(g), "[data] source", str(d), what, "not"]
    return build


def _zip(data: bytes) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("data.csv", data)
    return buf.getvalue()


def _parquet_bytes(data: bytes) -> bytes:
    import io

    import pandas as pd

    buf = io.BytesIO()
    pd.DataFrame({"text": ["a", "b"], "label": [0, 1]}).to_parquet(buf)
    return buf.getvalue()


def _relative_missing(c: Ctx) -> tuple[list[str], list[str]]:
    sub = c.tmp / "grids"
    sub.mkdir()
    g = tiny_grid(sub, data__source="reviews.csv")
    return c.run(g), [str(g), "[data] source", str(sub / "reviews.csv"), "no such data file",
                      "relative path is read from the grid file's folder"]


def _resume_without_grid_copy(c: Ctx) -> tuple[list[str], list[str]]:
    run_dir = c.tmp / "old-run"
    run_dir.mkdir()
    (run_dir / "trials.jsonl").write_text('{"trial_id": "x", "status": "ok"}\n', encoding="utf-8")
    g = c.grid()
    return (["run", str(g), "--resume", str(run_dir), "--no-report"],
            [str(run_dir), "has no grid.toml", "mix the records of two grids", "--out"])


def _resume_grid_copy_not_utf8(c: Ctx) -> tuple[list[str], list[str]]:
    run_dir = c.tmp / "old-run"
    run_dir.mkdir()
    (run_dir / "trials.jsonl").write_text("", encoding="utf-8")
    (run_dir / "grid.toml").write_bytes(b'name = "caf\xe9"\n')
    g = c.grid()
    return (["run", str(g), "--resume", str(run_dir), "--no-report"],
            [str(run_dir / "grid.toml"), "cannot be read", "not UTF-8"])


def _resume_user_folder_with_grid_only(c: Ctx) -> tuple[list[str], list[str]]:
    run_dir = c.tmp / "mygrids"  # the user's folder of grids: a grid.toml but no trials.jsonl
    run_dir.mkdir()
    g = c.grid()
    (run_dir / "grid.toml").write_bytes(g.read_bytes())
    return ["run", str(g), "--resume", str(run_dir), "--no-report"], [str(run_dir), "--resume expects a run folder"]


def user_folder_case(files: dict[str, str], needles: list[str]) -> Builder:
    """--out names a folder of the user's own: it must be refused and stay byte for byte as it was."""
    def build(c: Ctx) -> tuple[list[str], list[str]]:
        folder = c.tmp / "mine"
        folder.mkdir()
        for name, content in files.items():
            if content == "<dir>":
                (folder / name).mkdir()
            else:
                (folder / name).write_text(content, encoding="utf-8")
        g = c.grid()
        return (["run", str(g), "--out", str(folder), "--no-report"],
                [str(folder), "not empty and is not a harness run", *needles])
    return build


def _tiny_run(c: Ctx, name: str) -> Path:
    """A run folder with one record per trial, written as a run writes it."""
    from harness.record import TrialRecord
    from harness.store import RunStore

    from harness.config import load_grid

    cfg, text = load_grid(c.grid(f"{name}.toml"))
    store = RunStore(c.tmp / name)
    store.create(text, {})
    for trial in expand(cfg):
        rec = TrialRecord.empty(trial)
        rec.status = "ok"
        store.append(rec)
    store.close()
    return c.tmp / name


def compare_ignore_case(ignored: str, needles: list[str]) -> Builder:
    def build(c: Ctx) -> tuple[list[str], list[str]]:
        a, b = _tiny_run(c, "base"), _tiny_run(c, "new")
        return ["compare", str(a), str(b), "--ignore", ignored], [f"--ignore {ignored}", "not a setting", *needles]
    return build


def report_twice_case(second: Callable[[Path], str]) -> Builder:
    def build(c: Ctx) -> tuple[list[str], list[str]]:
        run = _tiny_run(c, "run1")
        return (["report", str(run), second(run), "--out", str(c.out)],
                ["given twice", "each run counts once"])
    return build


ROUND_TWO: dict[str, Builder] = {
    # -- 1. one column named as both the texts and the labels ---------------------------------------------
    "text_column is the label column": grid_case(["[data] text_column", "[data] label_column", "both name 'label'",
                                                  "two different columns"], data__text_column="label"),
    "label_column is the text column": grid_case(["[data] label_column", "both name 'text'"], data__label_column="text"),
    "text_column swept onto the label column": grid_case(["[grid] text_column", "both name 'label'"],
                                                         grid__text_column=["text", "label"]),
    "text and label column the same, both custom": grid_case(["both name 'stars'"], data__text_column="stars",
                                                             data__label_column="stars"),
    # -- 4. --out is a folder of the user's own ------------------------------------------------------------
    "--out holds the user's grid.toml": user_folder_case({"grid.toml": 'name = "mine"\n'}, ["grid.toml"]),
    "--out holds the user's env.json": user_folder_case({"env.json": "{}"}, ["env.json"]),
    "--out holds grid.toml and env.json": user_folder_case({"grid.toml": "x", "env.json": "{}"}, ["env.json, grid.toml"]),
    "--out holds notes and a folder": user_folder_case({"notes.txt": "mine", "sub": "<dir>"}, ["notes.txt, sub"]),
    "--out holds a run's files and the user's": user_folder_case(
        {"trials.jsonl": "", "grid.toml": "x", "notes.txt": "mine"}, ["notes.txt"]),
    # -- 5. --resume of nothing, or of a run that lost its grid ------------------------------------------
    "--resume of an empty name": argv_case(lambda c: ["run", str(c.grid()), "--resume", ""],
                                           ["--resume is an empty name", "unset shell variable"]),
    "--resume of a blank name": argv_case(lambda c: ["run", str(c.grid()), "--resume", "  "], ["--resume is an empty name"]),
    "--out of an empty name": argv_case(lambda c: ["run", str(c.grid()), "--out", ""], ["--out is an empty name"]),
    "grid file of an empty name": argv_case(lambda c: ["run", "", "--out", str(c.out)], ["the grid file is an empty name"]),
    "report of an empty name": argv_case(lambda c: ["report", ""], ["RUN_DIR is an empty name"]),
    "compare of an empty name": argv_case(lambda c: ["compare", "", str(c.tmp)], ["BASE is an empty name"]),
    "--resume of a run without its grid copy": _resume_without_grid_copy,
    "--resume of a run whose grid copy is not UTF-8": _resume_grid_copy_not_utf8,
    "--resume of a folder with a grid.toml and no run": _resume_user_folder_with_grid_only,
    # -- 6. texts that are not strings ---------------------------------------------------------------------
    "texts are lists (parquet)": parquet_case({"text": [["a", "b"]] * 30 + [["c"]] * 30, "label": [0, 1] * 30},
                                              ["'text' in data row 1 is a list", "['a', 'b']", "expected a text",
                                               "60 row(s)"]),
    "texts are structs (parquet)": parquet_case({"text": [{"a": 1}] * 60, "label": [0, 1] * 30},
                                                 ["data row 1 is a table", "60 row(s)"]),
    "texts are bytes (parquet)": parquet_case({"text": [b"abc"] * 60, "label": [0, 1] * 30}, ["is a bytes"]),
    "a text is a number (jsonl)": data_case("".join(json.dumps({"text": f"t {i}", "label": i % 2}) + "\n" for i in range(40))
                                            + '{"text": 42, "label": 1}\n', ["data row 41 (line 41) is a number", "42"],
                                            suffix=".jsonl"),
    "a text is a table (jsonl)": data_case('{"text": {"a": 1}, "label": 1}\n' + "".join(
        json.dumps({"text": f"t {i}", "label": i % 2}) + "\n" for i in range(40)), ["data row 1 (line 1) is a table"],
        suffix=".jsonl"),
    "a text is true (jsonl)": data_case('\n\n{"text": true, "label": 1}\n' + "".join(
        json.dumps({"text": f"t {i}", "label": i % 2}) + "\n" for i in range(40)), ["data row 1 (line 3) is a boolean"],
        suffix=".jsonl"),
    # -- 9. messages that misled -----------------------------------------------------------------------
    "frozen_layers in [train] deeper than the model": grid_case(["[train] frozen_layers", "has 2 layers"],
                                                                grid__frozen_layers=None, train__frozen_layers=3),
    "batch_size in [train] too large": grid_case(["[train] batch_size", "larger than the 36 training rows"],
                                                 grid__batch_size=None, train__batch_size=64),
    "dataset_size in [data] too large": grid_case(["[data] dataset_size", "larger than the 60 usable rows"],
                                                  grid__dataset_size=None, data__dataset_size=61),
    "broken jsonl line after blank lines": data_case('{"text": "a", "label": 1}\n\n\n{"text" "b"}\n',
                                                     ["line 4: not valid JSON"], suffix=".jsonl"),
    "jsonl line that is a list": data_case('{"text": "a", "label": 1}\n[1, 2]\n', ["line 2: a JSON list, not an object"],
                                           suffix=".jsonl"),
    "broken json array": data_case('[{"text": "a", "label": 1},\n {"text": }]\n', ["line 2: not valid JSON"], suffix=".json"),
    "row number with its line after a quoted multi-line text": data_case(
        'text,label\n"a text\nover three\nlines",0\n' + ROWS + "x,positve\n",
        ["'positve' only in data row 42 (line 45)"]),
    "row number with its line after blank lines (tsv)": data_case(
        "text\tlabel\n\n\n" + ROWS.replace(",", "\t") + "x\tNaN\n", ["data row 41 (line 44)"], suffix=".tsv"),
    "compare --ignore with a typo": compare_ignore_case("stratgy", ["did you mean strategy?"]),
    "compare --ignore with another typo": compare_ignore_case("batchsize", ["did you mean batch_size?"]),
    "compare --ignore of nothing like a setting": compare_ignore_case("zzz", ["expected one of", "strategy"]),
    "report of one run twice": report_twice_case(lambda run: str(run)),
    "report of a run and its trials.jsonl": report_twice_case(lambda run: str(run / "trials.jsonl")),
    "report of a run by two spellings": report_twice_case(lambda run: str(run.parent / "." / run.name) + "/"),
    "one learning rate twice (1 and 1.0)": grid_case(["[grid] learning_rate", "1 and 1.0 are the same value"],
                                                     grid__learning_rate=[1, 1.0]),
    "one momentum twice (0 and 0.0)": grid_case(["[grid] momentum", "0 and 0.0 are the same value"],
                                                grid__momentum=[0, 0.5, 0.0]),
    "one weight decay twice (1 and 1.0)": grid_case(["[grid] weight_decay", "same value"], grid__weight_decay=[1.0, 1]),
    "gzip file named .csv": compressed_case(".csv", __import__("gzip").compress, "gzip-compressed"),
    "bzip2 file named .tsv": compressed_case(".tsv", __import__("bz2").compress, "bzip2-compressed"),
    "xz file named .jsonl": compressed_case(".jsonl", __import__("lzma").compress, "xz-compressed"),
    "zip file named .csv": compressed_case(".csv", _zip, "a zip archive"),
    "parquet file named .csv": compressed_case(".csv", _parquet_bytes, "a parquet file"),
    "data path is a FIFO": _fifo,
    "data path is a symlink loop": _symlink_loop,
    "data path is a dangling symlink": _dangling_symlink,
    "data path is a folder named .csv": _folder_named_csv,
    "val_fraction leaves no training rows": grid_case(["[data] val_fraction", "0.99", "no training rows", "not a percentage"],
                                                      data__val_fraction=0.99),
    "swept val_fraction leaves no training rows": grid_case(["[grid] val_fraction", "no training rows"],
                                                            grid__val_fraction=[0.1, 0.98]),
    "val_fraction leaves too few rows for the batch": grid_case(["[grid] batch_size", "after val_fraction 0.9"],
                                                                data__val_fraction=0.9),
    "target_accuracy as a percentage": grid_case(["[report] target_accuracy", "did you mean 0.75?"],
                                                 report__target_accuracy=75),
    "val_fraction as a percentage": grid_case(["[data] val_fraction", "did you mean 0.1?"], data__val_fraction=10),
    "momentum as a percentage": grid_case(["[grid] momentum", "did you mean 0.9?"], grid__momentum=[90]),
    "key in the wrong section ([train] max_length)": grid_case(["[train] max_length", "belongs in [model]"],
                                                               train__max_length=64),
    "key in the wrong section (top-level epochs)": grid_case(["epochs: unknown key", "belongs in [train]"], epochs=2),
    "key in the wrong section ([limits] max_batch)": grid_case(["[limits] max_batch", "belongs in [search]"],
                                                               limits__max_batch=True),
    "run-wide key swept in [grid]": grid_case(["[grid] trial_timeout_s", "not a setting that can be swept", "[limits]"],
                                              grid__trial_timeout_s=[10, 20]),
    "key misspelt in its section": grid_case(["[train] learnig_rate", "did you mean learning_rate?"],
                                             train__learnig_rate=0.1),
    "relative data path missing beside the grid": _relative_missing,
}
CASES.update(ROUND_TWO)

# Run again as real subprocesses: grid, data, model, output and command-line mistakes.
SUBPROCESS_CASES = ["unknown key in a section", "non-UTF-8 bytes", "model folder with pickled weights only",
                    "missing grid file", "unknown command", "hub id not available offline",
                    "texts are lists (parquet)", "--out holds the user's grid.toml", "--resume of an empty name"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def ctx(tmp_path, monkeypatch) -> Ctx:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # default results/ and reports/ folders would land here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network in tests: a hub id is looked up in an empty cache
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return Ctx(tmp=tmp_path, data=tiny_csv(tmp_path), out=tmp_path / "out")


def check_one_line(err: str, needles: list[str]) -> str:
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith("harness: error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def test_the_table_has_at_least_30_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_exit_2(name, ctx, capsys):
    argv, needles = CASES[name](ctx)
    before = {p.name: _snapshot(p) for p in ctx.tmp.iterdir() if p.is_dir() and p.name != "work"}
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, f"exit {code}; stderr: {captured.err}; stdout: {captured.out[-2000:]}"
    check_one_line(captured.err, needles)
    # No partial run folder: --out was never made, nothing appeared in the working folder, and the folders
    # that existed (a run given to --resume, model folders) are byte for byte what they were.
    assert not ctx.out.exists()
    assert list((ctx.tmp / "work").iterdir()) == []
    after = {p.name: _snapshot(p) for p in ctx.tmp.iterdir() if p.is_dir() and p.name != "work"}
    assert after == before


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_reaches_the_terminal_as_one_line(name, ctx):
    argv, needles = CASES[name](ctx)
    proc = subprocess.run([sys.executable, "-m", "harness", *argv], cwd=ctx.tmp / "work", capture_output=True,
                          text=True, timeout=180, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stderr
    check_one_line(proc.stderr, needles)
    assert "Traceback" not in proc.stdout
    assert not ctx.out.exists()
    assert list((ctx.tmp / "work").iterdir()) == []


def test_allow_pickle_true_lets_the_pickled_folder_past_the_check(ctx, capsys):
    """The refusal is the default, not a dead end: with allow_pickle = true the folder is accepted by the
    check (transformers then loads it with torch.load(weights_only=True))."""
    from harness.core.models import check_local_folder

    folder = ctx.model_dir("m", {"config.json": BERT_CONFIG, "pytorch_model.bin": "x"})
    check_local_folder(folder, str(folder), allow_pickle=True)
    from harness.core.models import ModelError

    with pytest.raises(ModelError, match="allow_pickle"):
        check_local_folder(folder, str(folder), allow_pickle=False)


def test_some_empty_texts_are_dropped_not_refused(ctx):
    """The lab's rule: rows without text are dropped (only all-empty is an error)."""
    from harness.core.data import load_rows

    d = ctx.csv("some-empty.csv", "text,label\n" + ROWS + ",1\n   ,0\n")
    rows = load_rows(str(d), "text", "label")
    assert rows.dropped_empty == 2 and len(rows.texts) == 40


# --------------------------------------------------------------------------------------------------
# Property: any value for any key is a valid config or a ConfigError, never another exception
# --------------------------------------------------------------------------------------------------
def _schema_keys() -> list[tuple[str, str]]:
    keys = [("", "name"), ("", "repeats"), ("", "model"), ("", "grid"), ("", "limits"), ("", "bogus")]
    for section, (model, _) in SECTIONS.items():
        keys += [(section, f) for f in model.model_fields] + [(section, "bogus")]
    for section, model in (("limits", LimitsSection), ("cost", CostSection), ("search", SearchSection),
                           ("report", ReportSection)):
        keys += [(section, f) for f in model.model_fields]
    keys += [("grid", flat) for flat in flat_names()] + [("grid", "bogus")]
    keys += [("cost", "device_hour_usd")]
    return keys


KEYS = _schema_keys()
SPECIAL_STRINGS = ["all", "cpu", "cuda", "cuda:1", "cuda:99", "sgd", "adamw", "lab", "fast", "fp32", "auto", "batch",
                   "longest_in_set", "sdpa", "4GiB", "-1MiB", "1KiB", "embedded:reviews", "random:bert-tiny", "t4",
                   "../../x", "", " ", "\x00", "名前", "1e3", "nan"]
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-3, max_value=5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=2),
    st.text(max_size=12),
    st.sampled_from(SPECIAL_STRINGS),
    st.dates(),
)
values = st.one_of(
    st.none(),  # None: the key is left out
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(["cpu", "t4", "x"]), st.text(max_size=4)), scalars, max_size=3),
)


def _apply(doc: dict, section: str, key: str, value) -> None:
    if section == "":
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
        return
    table = doc.get(section)
    if not isinstance(table, dict):
        table = doc[section] = {}
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(KEYS), values), min_size=1, max_size=4))
def test_any_grid_value_is_a_config_or_a_config_error(edits):
    doc = tiny_grid_doc(data__source="embedded:reviews")
    for (section, key), value in edits:
        _apply(doc, section, key, value)
    text = dumps_toml(doc)
    try:
        cfg = parse_grid(text, "g.toml")
    except ConfigError as exc:
        msg = str(exc)
        assert msg.startswith("g.toml: "), msg
        return
    assert isinstance(cfg, GridFile)
    trials = expand(cfg)
    assert 1 <= len(trials) <= 100_000
    for t in trials[:5]:
        json.dumps(t.to_dict(), allow_nan=False)  # what the child gets is plain, finite JSON data
        for v in t.params.values():
            assert not (isinstance(v, float) and not math.isfinite(v))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(flat_names()) + ["bogus"]),
                       st.one_of(scalars, st.lists(scalars, max_size=5)), max_size=5))
def test_any_grid_table_is_a_config_or_a_config_error(axes):
    doc = tiny_grid_doc(data__source="embedded:reviews")
    doc["grid"] = {**doc["grid"], **axes}
    try:
        cfg = parse_grid(dumps_toml(doc), "g.toml")
    except ConfigError as exc:
        assert str(exc).startswith("g.toml: [grid]") or str(exc).startswith("g.toml: ")
        return
    assert expand(cfg)


# --------------------------------------------------------------------------------------------------
# What must still be accepted next to the round-two refusals
# --------------------------------------------------------------------------------------------------
LABELLED = [(f"t {i}", i % 2) for i in range(40)]


@pytest.mark.parametrize("name, suffix, content, first_text", [
    ("numbers in a CSV text column are texts", ".csv",
     "text,label\n" + "".join(f"{i},{i % 2}\n" for i in range(40)), "0"),
    ("JSON Lines with blank lines and a BOM", ".jsonl",
     "\ufeff" + "\n\n".join(json.dumps({"text": t, "label": y}) for t, y in LABELLED) + "\n\n", "t 0"),
    ("a .json file holding one array", ".json", json.dumps([{"text": t, "label": y} for t, y in LABELLED]), "t 0"),
    ("a CSV with a quoted multi-line text", ".csv",
     'text,label\n"two\nlines",1\n' + "".join(f"{t},{y}\n" for t, y in LABELLED), "two\nlines"),
])
def test_good_data_is_still_read(tmp_path, name, suffix, content, first_text):
    from harness.core.data import load_rows

    path = tmp_path / f"data{suffix}"
    path.write_text(content, encoding="utf-8")
    rows = load_rows(str(path), "text", "label")
    assert rows.texts[0] == first_text and all(isinstance(t, str) for t in rows.texts)
    assert len(rows.texts) >= 40 and sorted(rows.label_names) == [0, 1]


@pytest.mark.parametrize("flat, section, value", [
    ("frozen_layers", "train__frozen_layers", 0),
    ("model", "model__name", "random:bert-tiny"),
    ("source", "data__source", "embedded:reviews"),
    ("data_seed", "data__seed", 7),
    ("dataset_size", "data__dataset_size", 40),
    ("batch_size", "train__batch_size", 8),
])
def test_a_setting_is_named_where_the_user_wrote_it(flat, section, value):
    from harness.core.preflight import setting_place

    swept = parse_grid(dumps_toml(tiny_grid_doc(**{f"grid__{flat}": [value]})))
    fixed = parse_grid(dumps_toml(tiny_grid_doc(**{f"grid__{flat}": None, section: value})))
    table, _, key = section.partition("__")
    assert setting_place(swept, flat) == f"[grid] {flat}"
    assert setting_place(fixed, flat) == f"[{table}] {key}"
