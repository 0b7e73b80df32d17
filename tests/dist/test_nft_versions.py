"""The DaemonSet's install step refuses a node whose nft cannot read what the image's nft writes: nft 1.1.2 and
newer write user data on sets that older nft crashes reading (kubernetes #136786), and the watcher repairs route's
masquerade sets with the image's nft. The init container's command as the manifest has it, on fake node roots
(tests/dist/test_deploy.py) with an nft of a given version, and an image nft of another."""
import pytest
from test_deploy import fake_node_root, install_step

NFT = {"1.0.6": "nftables v1.0.6 (Lester Gooch #5)", "1.1.3": "nftables v1.1.3 (Commodore Bullmoose #4)"}


def nft(path, version):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{NFT[version]}'\n")
    path.chmod(0o755)


@pytest.mark.parametrize("image, node", [("1.0.6", "1.0.6"), ("1.0.6", "1.1.3"), ("1.1.3", "1.1.3")])
def test_an_image_nft_the_nodes_reads_is_installed(dist_route, tmp_path, bare_env, image, node):
    root = fake_node_root(tmp_path / "node", "good")
    nft(root / "usr" / "sbin" / "nft", node)
    nft(tmp_path / "image" / "usr" / "local" / "bin" / "nft", image)
    proc = install_step(dist_route, tmp_path, bare_env, root)
    assert proc.returncode == 0, proc
    assert f"nft versions: this nft {image}, the node's {node}: the node's reads what this one writes" in proc.stdout
    assert (root / "opt" / "cni" / "bin" / "route").is_file()


def test_an_image_nft_newer_than_the_nodes_can_read_is_refused(dist_route, tmp_path, bare_env):
    root = fake_node_root(tmp_path / "node", "good")
    nft(root / "usr" / "sbin" / "nft", "1.0.6")
    nft(tmp_path / "image" / "usr" / "local" / "bin" / "nft", "1.1.3")
    proc = install_step(dist_route, tmp_path, bare_env, root)
    assert proc.returncode == 1 and proc.stdout == "", proc
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"route install: refused, nothing changed: the node ({tmp_path}/container/node) cannot "
                           "run route: nft versions: this nft 1.1.3, the node's 1.0.6: this one writes set data the "
                           "node's crashes reading"), line
    assert list((root / "opt" / "cni" / "bin").iterdir()) == []
