"""The generated identity.v1 package, migrations and data files import from a
built wheel, not only from the editable checkout."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import identity, identity.v1.auth_pb2_grpc, identity.v1.rbac_pb2, identity.migrations
from importlib import resources
from identity.domain.passwords import check_password_policy
from identity.cli.main import app
assert "/site-packages/identity/" in identity.__file__, identity.__file__
assert resources.files("identity.migrations").joinpath("env.py").is_file()
assert resources.files("identity.migrations.versions").joinpath("0001_initial_schema.py").is_file()
assert resources.files("identity.deploy").joinpath("envoy.yaml.tmpl").is_file() or \
    resources.files("identity").joinpath("deploy/envoy.yaml.tmpl").is_file()
assert resources.files("identity.deploy").joinpath("edge.lua").is_file()
check_password_policy("a fine long password", "someone")
print("ok")
"""


def test_wheel_imports_generated_code_and_ships_data(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("identity-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "identity/v1/auth_pb2.py" in names
    assert "identity/v1/auth_pb2.pyi" in names
    assert "identity/migrations/versions/0001_initial_schema.py" in names
    assert "identity/peer/verifier.py" in names

    # `pip install identity[peer]` brings only what identity.peer imports.
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [
        line.split(":", 1)[1].strip()
        for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    base = sorted(r.split(">")[0].split("[")[0] for r in requires if "extra ==" not in r)
    assert base == ["cryptography", "googleapis-common-protos", "grpcio", "protobuf", "pyjwt"]
    assert "Provides-Extra: peer" in zipfile.ZipFile(wheel).read(metadata).decode()

    # A bare environment holding the wheel; dependencies come from this venv's
    # site-packages through a plain path entry (so its editable finder is not loaded).
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    target = Path(
        subprocess.run(
            [str(env_dir / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    zipfile.ZipFile(wheel).extractall(target)
    (target / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    result = subprocess.run(
        [str(env_dir / "bin/python"), "-c", PROBE], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
