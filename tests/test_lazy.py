"""The packages' lazy name tables (owp.lazy): names import on first use, once."""

from __future__ import annotations

import subprocess
import sys

import pytest

import owp
import owp.models


def test_a_public_name_is_imported_on_first_use_and_kept():
    code = (
        "import sys, owp; assert 'owp.evaluation.proposals' not in sys.modules; "
        "f = owp.evaluate_proposals; assert 'owp.evaluation.proposals' in sys.modules; "
        "assert owp.__dict__['evaluate_proposals'] is f; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("package", [owp, owp.models])
def test_every_listed_name_resolves_and_unknown_names_raise(package):
    for name in package.__all__:
        assert name in dir(package)
        assert getattr(package, name) is not None
    with pytest.raises(
        AttributeError, match=f"module '{package.__name__}' has no attribute 'nope'"
    ):
        package.nope  # noqa: B018 (the look-up is what is tested)
