"""`fedrad keys site`: a node key pair in the format Flower 1.42 loads, private key secret."""

from __future__ import annotations

import argparse
import stat

from flwr.cli.supernode.register import try_load_public_key
from flwr.supercore.primitives.asymmetric import public_key_to_bytes
from flwr.supernode.cli.flower_supernode import _try_setup_client_authentication
from typer.testing import CliRunner

from fedrad.common.cli import app


def _site(out, name="site01"):
    return CliRunner().invoke(app, ["keys", "site", name, "--out", str(out)])


def test_flower_loads_the_node_key_pair_and_they_match(tmp_path):
    assert _site(tmp_path).exit_code == 0
    # the very functions `flower-supernode --auth-supernode-private-key` and
    # `flwr supernode register` call
    args = argparse.Namespace(
        auth_supernode_private_key=str(tmp_path / "node.key"), auth_supernode_public_key=None
    )
    _, public = _try_setup_client_authentication(args)
    registered = try_load_public_key(tmp_path / "node.pub")
    assert public.curve.name == "secp384r1"
    assert public_key_to_bytes(public) == registered


def test_the_private_node_key_is_readable_by_its_owner_only(tmp_path):
    assert _site(tmp_path).exit_code == 0
    assert stat.S_IMODE((tmp_path / "node.key").stat().st_mode) == 0o600


def test_a_second_site_key_refuses_to_overwrite_the_first(tmp_path):
    assert _site(tmp_path).exit_code == 0
    before = (tmp_path / "node.key").read_bytes()
    result = _site(tmp_path)
    assert result.exit_code == 2 and "already exist" in result.output
    assert (tmp_path / "node.key").read_bytes() == before
