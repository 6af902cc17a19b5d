"""Who can reach the aggregator (server/exposure.py): loopback unless exposure is asked
for by name, and a gateway that dials the SuperLink where it really listens."""

from __future__ import annotations

import pytest

from fedrad.common.user_error import UserError
from fedrad.server.certificates import make_federation_certificates
from fedrad.server.exposure import exposure, is_loopback, public_port, start_gateway_command


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_addresses_are_loopback(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "fedrad.hospital.org"])
def test_other_addresses_are_not(host):
    assert not is_loopback(host)
    with pytest.raises(UserError, match="--allow-control-api-exposure"):
        exposure(None, host, allow=False, port=8000)


def test_an_allowed_exposure_is_warned_about_and_a_loopback_one_is_not():
    assert exposure("0.0.0.0:8443", "127.0.0.1", allow=False, port=8000).warning(8000) is None
    warning = exposure(None, "0.0.0.0", allow=True, port=8000).warning(8000)
    assert "0.0.0.0:8000" in warning and "WITHOUT authentication" in warning


def test_a_gateway_on_every_address_is_checked_on_loopback():
    assert public_port(exposure("0.0.0.0:8443", "127.0.0.1", False, 8000)) == ("127.0.0.1", 8443)
    assert public_port(exposure("10.1.2.3:8443", "127.0.0.1", False, 8000)) == ("10.1.2.3", 8443)
    assert public_port(exposure(None, "127.0.0.1", False, 8000)) is None


@pytest.mark.parametrize(
    ("superlink_host", "dialled"),
    [("0.0.0.0", "127.0.0.1:8000"), ("10.1.2.3", "10.1.2.3:8000")],
)
def test_the_gateway_dials_the_superlink_where_it_listens(tmp_path, superlink_host, dialled):
    keys = make_federation_certificates(tmp_path / "keys", ["localhost", "10.1.2.3"])
    reach = exposure("0.0.0.0:8443", superlink_host, allow=True, port=8000)
    command = start_gateway_command(reach, keys, tmp_path / "state", 8000)
    config = (tmp_path / "state" / "gateway" / "nginx.conf").read_text()
    assert command[-3] == str(tmp_path / "state" / "gateway" / "nginx.conf")
    assert f"server {dialled};" in config
