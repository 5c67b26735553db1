"""The one log format: key=value lines that keep the `extra=` fields of a record."""

import io
import logging
import sys

import pytest

from deltanas.logs import KeyValueFormatter, setup_logging


def _line(message: str, *args: object, **extra: object) -> str:
    record = logging.LogRecord("curator_svc.lemur", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return KeyValueFormatter().format(record)


def test_extra_fields_are_kept_after_the_message() -> None:
    line = _line("lemur index built", seconds=1.5, models=9000, excluded={"no model file": 3})
    assert line.endswith('logger=curator_svc.lemur msg="lemur index built" seconds=1.5 models=9000 '
                         "excluded=\"{'no model file': 3}\"")


def test_a_record_without_extras_is_one_plain_line() -> None:
    line = _line("ready on %s", "127.0.0.1:1")
    assert line.endswith('level=info logger=curator_svc.lemur msg="ready on 127.0.0.1:1"')


def test_records_go_to_stderr_as_it_is_when_they_are_emitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream swapped in and closed after the set-up (a test's capture) fails no later record."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    setup_logging("INFO")
    first.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    logging.getLogger("deltanas.test").info("after the swap")
    assert 'msg="after the swap"' in now.getvalue()
