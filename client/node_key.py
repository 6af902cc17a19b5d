"""The site's node key: how the SuperLink recognises this site's SuperNode.

Flower 1.42 reads the private key with `load_ssh_private_key` (an EC key in OpenSSH
format, as `ssh-keygen -t ecdsa -b 384 -N ""` writes) and allow-lists the OpenSSH public
key (`flwr supernode register`). The private key stays in the site's folder; only
`node.pub` goes to the coordinator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedrad.common.keyfiles import refuse_existing, write_private, write_public


@dataclass(frozen=True)
class NodeKeyFiles:
    folder: Path

    @property
    def private(self) -> Path:
        return self.folder / "node.key"

    @property
    def public(self) -> Path:
        return self.folder / "node.pub"


def make_node_key(folder: Path, comment: str) -> NodeKeyFiles:
    """Write a new node key pair into `folder`; KeyFilesExist if one is already there."""
    paths = NodeKeyFiles(folder)
    refuse_existing((paths.private, paths.public))
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    write_private(paths.private, private)
    write_public(paths.public, public + f" {comment}\n".encode())
    return paths
