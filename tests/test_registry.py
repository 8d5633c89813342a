"""The shipped registry and the validators, with their bad-input cases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import MODELS, assert_clean_error, run_cli


def test_shipped_registry_validates(tmp_path: Path) -> None:
    out = tmp_path / "registry-report.json"
    p = run_cli("tinysal", "validate-registry", "--out-json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    rep = json.loads(out.read_text())
    assert rep["ok"] and len(rep["production"]) == 1
    verdicts = {m["id"]: m["verdict"] for m in rep["models"]}
    assert all(v.startswith("pass") for v in verdicts.values())
    smoke = [m for m in rep["models"] if m["status"] == "smoke"]
    assert all("smoke" in m["verdict"] for m in smoke)
    for m in rep["models"]:
        assert m["checks"]["sha256_match"] and m["checks"]["op_allowlist"] and m["checks"]["io_contract"]
    prov = rep["run_provenance"]
    assert {"tool_version", "argv", "args", "inputs", "outputs", "timestamp_utc", "versions", "host"} <= set(prov)
    assert all("sha256" in i for i in prov["inputs"])


def test_registry_schema_and_production_model() -> None:
    from tinysal.model.arch import ARCHITECTURES
    from tinysal.model.registry import default_model_path, load_registry, production_model

    reg = load_registry()
    prod = production_model(reg)
    assert prod["status"] == "production" and prod["arch"] == "saliency_student_v3"  # won the pooled validation
    assert default_model_path().is_file() and default_model_path().name == prod["file"]
    assert prod["param_count"] == ARCHITECTURES[prod["arch"]]["params"] == 118_553
    # the architectures the brief fixes keep their exact sizes
    by_id = {m["id"]: m for m in reg["models"]}
    assert by_id["saliency_student_v2"]["param_count"] == 123_721
    assert by_id["saliency_student_v1"]["param_count"] == 112_841


@pytest.fixture
def reg_copy(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    shutil.copytree(MODELS, d)
    return d / "registry.json"


def _edit(path: Path, fn) -> None:
    reg = json.loads(path.read_text())
    fn(reg)
    path.write_text(json.dumps(reg))


def test_registry_not_json(reg_copy: Path, tmp_path: Path) -> None:
    reg_copy.write_text("{not json")
    out = tmp_path / "r.json"
    assert_clean_error(
        run_cli("tinysal", "validate-registry", "--registry", str(reg_copy), "--out-json", str(out)), "not valid JSON"
    )
    assert not out.exists()


def test_registry_fails_schema(reg_copy: Path, tmp_path: Path) -> None:
    _edit(reg_copy, lambda r: r["models"][0].update(status="beta"))
    out = tmp_path / "r.json"
    assert_clean_error(
        run_cli("tinysal", "validate-registry", "--registry", str(reg_copy), "--out-json", str(out)), "schema"
    )
    assert not out.exists()


def test_registry_sha_mismatch(reg_copy: Path, tmp_path: Path) -> None:
    _edit(reg_copy, lambda r: r["models"][0].update(sha256="0" * 64))
    out = tmp_path / "r.json"
    p = run_cli("tinysal", "validate-registry", "--registry", str(reg_copy), "--out-json", str(out))
    assert p.returncode == 1 and "sha256 mismatch" in p.stderr and "Traceback" not in p.stderr
    rep = json.loads(out.read_text())  # a finished validation writes its verdicts, failing ones included
    assert not rep["ok"] and rep["models"][0]["verdict"] == "fail"


def test_registry_needs_exactly_one_production(reg_copy: Path) -> None:
    def two(r: dict) -> None:
        for m in r["models"]:
            if m["status"] == "superseded":
                m["status"] = "production"

    reg = json.loads(reg_copy.read_text())
    if not any(m["status"] == "superseded" for m in reg["models"]):
        pytest.skip("no superseded model to promote")
    _edit(reg_copy, two)
    p = run_cli("tinysal", "validate-registry", "--registry", str(reg_copy))
    assert p.returncode == 1 and "expected exactly 1" in p.stderr


def test_registry_missing_file(reg_copy: Path) -> None:
    first = json.loads(reg_copy.read_text())["models"][0]["file"]
    (reg_copy.parent / first).unlink()
    p = run_cli("tinysal", "validate-registry", "--registry", str(reg_copy))
    assert p.returncode == 1 and "file missing" in p.stderr


def test_registry_sidecar_disagreement(reg_copy: Path) -> None:
    side = reg_copy.parent / json.loads(reg_copy.read_text())["models"][0]["sidecar"]
    s = json.loads(side.read_text())
    s["param_count"] = 1
    side.write_text(json.dumps(s))
    p = run_cli("tinysal", "validate-registry", "--registry", str(reg_copy))
    assert p.returncode == 1 and "param_count disagrees" in p.stderr


def test_validate_model_reports_status(tmp_path: Path, smoke_model: Path) -> None:
    out = tmp_path / "vm.json"
    p = run_cli("tinysal", "validate-model", str(smoke_model), "--out-json", str(out))
    assert p.returncode == 0, p.stderr
    assert "smoke" in p.stdout
    rep = json.loads(out.read_text())
    assert rep["registry_status"] == "smoke" and rep["ok"]
    from tinysal.model.registry import default_model_path

    p = run_cli("tinysal", "validate-model", str(default_model_path()))
    assert p.returncode == 0 and "registry status: production" in p.stdout


def test_validate_model_with_checkpoint_runs_parity(tmp_path: Path, smoke_model: Path) -> None:
    torch = pytest.importorskip("torch")
    from tinysal.model.nets import create_model, save_checkpoint

    torch.manual_seed(0)
    ck = tmp_path / "smoke.pt"
    save_checkpoint(ck, create_model("saliency_student_v2"), "saliency_student_v2")
    out = tmp_path / "vm.json"
    p = run_cli("tinysal", "validate-model", str(smoke_model), "--checkpoint", str(ck), "--out-json", str(out))
    assert p.returncode == 0, p.stderr
    assert json.loads(out.read_text())["parity"]["max_abs_diff"] <= 1e-5


def test_bundled_models_open_without_the_onnx_parse_others_get_every_check(tmp_path: Path) -> None:
    """A file byte-identical to a registry model (the registry's own checks vouch for it; the test above re-runs
    them) opens without importing ``onnx``; one changed byte sends it through the ONNX checker and the allowlist."""
    import subprocess
    import sys

    from tinysal.model.registry import default_model_path, load_registry, model_path

    reg = load_registry()
    copy = tmp_path / "copy.onnx"
    shutil.copy(default_model_path(), copy)
    code = (
        "import sys; from tinysal.model.session import create_session; "
        "s = create_session(sys.argv[1]); print(s.input_multiple, 'onnx' in sys.modules)"
    )
    for m in reg["models"]:
        p = subprocess.run([sys.executable, "-c", code, str(model_path(m, reg))], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == [str(m["input_multiple"]), "False"], m["id"]
    p = subprocess.run([sys.executable, "-c", code, str(copy)], capture_output=True, text=True)
    assert p.stdout.split()[1] == "False"  # where it lives does not matter, the bytes do
    data = copy.read_bytes()
    # the same graph with another producer version: not a registry model any more, so the full checks run
    i = data.index(b"tinysal", 0, 200)
    copy.write_bytes(data[:i] + b"T" + data[i + 1 :])
    p = subprocess.run([sys.executable, "-c", code, str(copy)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[1] == "True"
    # and a change those checks catch: the last byte is in the input-multiple metadata
    copy.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    code_err = "import sys; from tinysal.model.session import create_session; create_session(sys.argv[1])"
    p = subprocess.run([sys.executable, "-c", code_err, str(copy)], capture_output=True, text=True)
    assert p.returncode != 0 and "input_multiple" in p.stderr.splitlines()[-1]
