"""docs/own_data.md's commands run as written on tiny data.

Every fenced ``bash`` block preceded by ``<!-- tested -->`` is run, in document order, in one
folder holding a tiny COCO export (``my_coco/``, the layout the doc describes), a tiny folder
dataset (``my_masks/``) and tiny synthetic microscopy (``my_cells/``, 16-bit TIFFs). Each
command must be a ``pixelgroup`` command; it runs in-process
(``pixelgroup.cli.main``) with its words as the shell would split them (quotes, ``\\`` line
continuations, ``*`` globs) and must exit 0. The one substitution, stated in the doc: every
``train`` gets :data:`QUICK` appended, so that it takes seconds.
"""

from __future__ import annotations

import glob
import re
import shlex
from pathlib import Path

import pytest

from pixelgroup.cli import main
from pixelgroup.data.synthetic_cells import write_cells_folder
from tests.data.test_coco_dataset import write_tiny_coco, write_tiny_folder

DOC = Path(__file__).resolve().parents[1] / "docs" / "own_data.md"

QUICK = [
    "--set", "train.epochs=1",
    "--set", "train.iters_per_epoch=2",
    "--set", "data.options.size=[48,48]",
    "--set", "data.batch_size=2",
    "--set", "data.num_workers=0",
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


_BLOCK = re.compile(r"<!-- tested -->\s*\n```bash\n(.*?)```", re.S)


def doc_commands(text: str) -> list[list[str]]:
    """The commands of the tested blocks of ``text``, each split into words."""
    commands = []
    for block in _BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def test_the_doc_has_tested_blocks_and_states_the_substitution():
    text = DOC.read_text()
    commands = doc_commands(text)
    assert len(commands) >= 8 and all(c[0] == "pixelgroup" for c in commands)
    assert {c[1] for c in commands} == {"train", "eval", "tune", "predict"}
    assert " ".join(QUICK).replace("--set ", "`--set ", 1) in " ".join(text.split())
    assert "BANDWIDTH_TABLE" not in text


def test_tested_commands_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("timm", reason="the efficientnet extra (pretrained weights)")
    write_tiny_coco(tmp_path / "my_coco")
    write_tiny_folder(tmp_path / "my_masks")
    write_cells_folder(tmp_path / "my_cells", size=(64, 64), count=8, diameter=(10.0, 20.0))
    monkeypatch.chdir(tmp_path)
    for words in doc_commands(DOC.read_text()):
        args = []
        for word in words[1:]:
            args += sorted(glob.glob(word)) if "*" in word else [word]
        if args[0] == "train":
            args += QUICK
        code = main(args + ["--quiet"])
        assert code == 0, f"{' '.join(words)}: exit {code}: {capsys.readouterr().err}"
    assert (tmp_path / "predictions" / "results.json").is_file()
    assert (tmp_path / "predictions_masks" / "val_1_labels.png").is_file()
    assert (tmp_path / "runs" / "my_coco" / "bw0.3.json").is_file()
    assert (tmp_path / "predictions_cells" / "cells_001_labels.png").is_file()
