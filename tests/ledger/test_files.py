"""``ledger.files.read_bounded``: every user-named file is read bounded, and only regular files are read."""

from __future__ import annotations

import os

import pytest

from ledger.errors import ValidationError
from ledger.files import read_bounded, read_text_bounded


def test_a_regular_file_within_its_limit_is_read_whole(tmp_path):
    p = tmp_path / "a.json"
    p.write_bytes(b"x" * 100)
    assert read_bounded(p, 100) == b"x" * 100
    assert read_text_bounded(p, 100) == "x" * 100


def test_a_file_over_its_limit_is_refused_naming_path_and_limit(tmp_path):
    p = tmp_path / "big.json"
    p.write_bytes(b"x" * 101)
    with pytest.raises(ValidationError) as e:
        read_bounded(p, 100, field="config", limit_name="MAX_CONFIG_FILE_BYTES")
    assert e.value.field == "config" and e.value.value == str(p)
    assert e.value.evidence["limit"] == 100 and "MAX_CONFIG_FILE_BYTES" in str(e.value)


def test_a_device_is_refused_before_anything_is_read():
    with pytest.raises(ValidationError) as e:
        read_bounded("/dev/zero", 1 << 30)
    assert e.value.value == "/dev/zero" and "character device" in e.value.reason


def test_a_fifo_without_a_writer_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValidationError) as e:
        read_bounded(fifo, 1 << 20)
    assert "FIFO" in e.value.reason


def test_a_directory_and_a_missing_file_are_refused(tmp_path):
    with pytest.raises(ValidationError, match="directory"):
        read_bounded(tmp_path, 10)
    with pytest.raises(ValidationError, match="cannot be read"):
        read_bounded(tmp_path / "nope", 10)


def test_text_that_is_not_utf8_is_refused(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes(b"caf\xe9")
    with pytest.raises(ValidationError, match="not UTF-8"):
        read_text_bounded(p, 10)
