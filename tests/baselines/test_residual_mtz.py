"""B2 (MTZ) on residual nets: refused with a StructureError that says what is missing."""
import pytest

from pam_explorer.baselines.mtz import zip_networks
from pam_explorer.core.errors import StructureError
from tests.helpers import tiny_resnets
from tests.prune.prune_fixtures import synthetic


def test_mtz_refuses_residual_nets_and_says_why():
    with pytest.raises(StructureError, match="cannot zip residual networks.*stage stream.*B1 and PAM"):
        zip_networks(tiny_resnets(2, size=32, outputs=(2, 1)), "AB", synthetic(8, 0), synthetic(8, 1))
