"""Foundation models: names → release files, cache + sha256, offline errors, loading, info, element checks."""

from __future__ import annotations

import argparse
import hashlib
import os

import pytest

from firemlip.cli import OneLineParser, main
from firemlip.errors import FiremlipError

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    from firemlip.models import build_mace, save_model

    p = tmp_path_factory.mktemp("tiny") / "tiny.model"
    save_model(build_mace(["Al", "Cu", "Li"], "tiny", atomic_energies={"Li": -1.5}), p)
    return p


def test_names_match_mace_release_urls_and_hashes():
    from mace.calculators.foundations_models import mace_mp_urls

    from firemlip.foundation import FOUNDATIONS

    for spec in FOUNDATIONS.values():
        assert spec.url == mace_mp_urls[spec.mace_key], spec.name
    assert FOUNDATIONS["mace-mpa-0-medium"].sha256.startswith("75428afe")
    assert FOUNDATIONS["mace-mp-0-small"].filename == "2023-12-10-mace-128-L0_energy_epoch-249.model"


def test_fetch_verifies_sha256(tmp_path):
    from firemlip.foundation import fetch

    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 5000)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = fetch(src.as_uri(), tmp_path / "cache" / "m.model", good, progress=False)
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(FiremlipError, match="sha256 mismatch") as exc:
        fetch(src.as_uri(), tmp_path / "cache2" / "m.model", "0" * 64, progress=False)
    assert str(tmp_path / "cache2") in str(exc.value)
    assert not (tmp_path / "cache2" / "m.model").exists()
    assert not [p for p in (tmp_path / "cache2").iterdir()]  # no partial file left


def test_offline_errors_name_file_and_directory(tmp_path, monkeypatch):
    from firemlip.foundation import FOUNDATIONS, fetch, resolve_foundation

    monkeypatch.setenv("FIREMLIP_CACHE", str(tmp_path / "models"))
    spec = FOUNDATIONS["mace-mpa-0-medium"]
    with pytest.raises(FiremlipError) as exc:
        resolve_foundation("mace-mpa-0-medium", download=False)
    assert spec.filename in str(exc.value) and str(tmp_path / "models") in str(exc.value)
    with pytest.raises(FiremlipError) as exc:  # an unreachable source, as without network
        fetch((tmp_path / "nowhere" / spec.filename).as_uri(), tmp_path / "models" / spec.filename, spec.sha256,
              progress=False)
    msg = str(exc.value)
    assert "cannot download" in msg and spec.filename in msg and str(tmp_path / "models") in msg
    # a corrupt cached file is refused by its sha256
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / spec.filename).write_bytes(b"garbage")
    with pytest.raises(FiremlipError, match="does not match"):
        resolve_foundation("mace-mpa-0-medium")
    with pytest.raises(FiremlipError, match="known"):
        resolve_foundation("mace-mp-9-huge")


def test_load_model_and_info(tiny_model_path):
    from firemlip.foundation import load_model, model_info

    m = load_model(tiny_model_path, dtype="float32")
    info = model_info(m)
    assert info["elements"] == ["Li", "Al", "Cu"]  # atomic-number order
    assert info["r_max_A"] == pytest.approx(4.5)
    assert info["channels"] == 8 and info["L"] == 1 and info["heads"] == ["Default"]
    assert info["parameters"] == sum(p.numel() for p in m.parameters()) > 1000
    assert info["dtype"] == "float32"
    assert info["E0s_eV"]["Li"] == pytest.approx(-1.5)


def test_not_a_mace_model(tmp_path, capsys):
    import torch

    from firemlip.foundation import load_model

    txt = tmp_path / "notes.model"
    txt.write_text("hello\n")
    with pytest.raises(FiremlipError, match="not a MACE model"):
        load_model(txt)
    other = tmp_path / "linear.model"
    torch.save(torch.nn.Linear(2, 2), other)
    with pytest.raises(FiremlipError, match="Linear"):
        load_model(other)
    rc = main(["foundation", "info", str(txt)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "notes.model" in err


def test_check_elements(tiny_model_path):
    from ase.build import bulk

    from firemlip.foundation import check_elements, load_model

    m = load_model(tiny_model_path)
    check_elements(m, [bulk("Cu")], "cu.xyz")
    with pytest.raises(FiremlipError, match=r"pool.extxyz: element\(s\) Fe, Ni not covered"):
        check_elements(m, [bulk("Fe"), bulk("Ni"), bulk("Li")], "pool.extxyz")


def test_cli_info_and_shared_group(tiny_model_path, capsys):
    assert main(["foundation", "info", str(tiny_model_path)]) == 0
    out = capsys.readouterr().out
    for word in ("Li Al Cu", "4.500 Å", "channels    8", "Default", "float64", "parameters"):
        assert word in out
    # another module can add a command (like `foundation distill`) to the same group
    from firemlip.cli import command_group
    from firemlip.cli.foundation import register_cli

    top = OneLineParser(prog="firemlip")
    sub = top.add_subparsers(dest="command", parser_class=OneLineParser)
    register_cli(sub)
    g = command_group(sub, "foundation", "again")
    p = g.add_parser("extra-command")
    p.set_defaults(func="extra")
    args = top.parse_args(["foundation", "extra-command"])
    assert args.func == "extra"
    assert top.parse_args(["foundation", "info", "x.model"]).model == "x.model"
    assert isinstance(g, argparse._SubParsersAction)
