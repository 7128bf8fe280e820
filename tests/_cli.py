"""Shared checks of the command-line tests."""


def one_line_error(capsys, *fragments: str) -> str:
    """The captured stderr, checked to be one line without a traceback that contains every
    one of ``fragments``; returned for further checks."""
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err
