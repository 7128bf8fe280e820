"""The CLI prints the library's notes and warnings on stderr while a command runs."""

import logging

import pytest

from pixelgroup.cli import _library_log


@pytest.mark.parametrize(
    ("quiet", "rank", "shown"),
    [(False, None, {"note", "warning"}), (True, None, {"warning"}), (False, "1", {"warning"})],
)
def test_notes_show_once_and_not_when_quiet(quiet, rank, shown, capsys, monkeypatch):
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:  # a torchrun process other than the first
        monkeypatch.setenv("RANK", rank)
    log = logging.getLogger("pixelgroup.tasks.instance")
    with _library_log(quiet):
        log.info("note")
        log.warning("warning")
    log.info("after")  # the handler is gone with the command
    lines = set(capsys.readouterr().err.split())
    assert lines == shown
