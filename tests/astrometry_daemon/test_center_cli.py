"""`tenmon center` argument checks (no daemon needed) and the message when no daemon answers."""

from __future__ import annotations

import argparse

import pytest

from tenmon.cli import center
from tenmon.core.errors import ApiError, TenmonError


def _run(argv):
    p = argparse.ArgumentParser()
    center.register(p.add_subparsers())
    args = p.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize("argv, words", [
    (["center", "361", "10"], "RA_DEG 361"),
    (["center", "10", "--", "-91"], "DEC_DEG -91"),
    (["center", "10", "20", "--tolerance", "0"], "--tolerance 0"),
    (["center", "10", "20", "--max-tries", "0"], "--max-tries 0"),
    (["center", "10", "20", "--exposure", "-1"], "--exposure -1"),
])
def test_bad_arguments_are_named(argv, words):
    with pytest.raises(TenmonError, match=words):
        _run(argv[:1] + ["--url", "http://127.0.0.1:9"] + argv[1:])


def test_no_daemon_says_so():
    with pytest.raises(ApiError, match="no tenmon daemon answers"):
        _run(["center", "10", "20", "--url", "http://127.0.0.1:9"])
