"""Export, op allowlist, I/O contract, parity, and the bad-input cases of each."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import assert_clean_error, run_cli
from onnx import TensorProto, helper

torch = pytest.importorskip("torch")


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tinysal.model.nets import create_model, save_checkpoint

    d = tmp_path_factory.mktemp("ckpt")
    out = {}
    for arch in ("saliency_student_v1", "saliency_student_v2"):
        torch.manual_seed(1)
        m = create_model(arch)
        # non-trivial BatchNorm statistics, so constant folding of BN is really exercised
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
        save_checkpoint(d / f"{arch}.pt", m, arch)
        out[arch] = d / f"{arch}.pt"
    return out


@pytest.fixture(scope="module")
def onnx_files(ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("onnx")
    out = {}
    for arch, ck in ckpts.items():
        p = run_cli("tinysal", "export", str(ck), "--output", str(d / f"{arch}.onnx"))
        assert p.returncode == 0, p.stderr
        out[arch] = d / f"{arch}.onnx"
    return out


def test_export_is_deterministic(ckpts: dict[str, Path], onnx_files: dict[str, Path], tmp_path: Path) -> None:
    from tinysal.model.export import export_checkpoint

    for arch, ck in ckpts.items():
        again = tmp_path / f"{arch}-again.onnx"
        info = export_checkpoint(ck, again)
        assert info["sha256"] == _sha(onnx_files[arch]) == _sha(again)


def test_export_contract(onnx_files: dict[str, Path]) -> None:
    for arch, path in onnx_files.items():
        m = onnx.load(str(path))
        assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [17]
        (inp,), (out,) = m.graph.input, m.graph.output
        assert inp.name == "input" and out.name == "saliency_map"
        dims_in = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
        dims_out = [d.dim_value or d.dim_param for d in out.type.tensor_type.shape.dim]
        assert dims_in[:2] == [1, 3] and all(isinstance(d, str) for d in dims_in[2:])
        assert dims_out[:2] == [1, 1] and all(isinstance(d, str) for d in dims_out[2:])
        assert not any(n.op_type == "BatchNormalization" for n in m.graph.node), "BN should be folded"
        resizes = [n for n in m.graph.node if n.op_type == "Resize"]
        if arch == "saliency_student_v1":
            assert not resizes
            assert sum(n.op_type == "ConvTranspose" for n in m.graph.node) == 3
        else:
            assert len(resizes) == 3
            for n in resizes:
                attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
                assert attrs["mode"] == b"linear"
                assert attrs["coordinate_transformation_mode"] == b"half_pixel"
                assert attrs.get("antialias", 0) == 0


def test_dynamic_hw_runs_in_onnxruntime(onnx_files: dict[str, Path]) -> None:
    from tinysal.model.session import create_session

    s = create_session(onnx_files["saliency_student_v2"])
    for h, w in ((64, 96), (272, 480), (120, 64)):
        y = s.run(np.zeros((1, 3, h, w), np.float32))
        assert y.shape == (1, 1, h, w)


def test_check_ops_and_parity_cli(ckpts: dict[str, Path], onnx_files: dict[str, Path], tmp_path: Path) -> None:
    for arch in ckpts:
        p = run_cli("tinysal", "check-ops", str(onnx_files[arch]))
        assert p.returncode == 0 and "OK" in p.stdout, p.stderr
        rep = tmp_path / f"parity-{arch}.json"
        p = run_cli("tinysal", "parity", str(ckpts[arch]), str(onnx_files[arch]), "--out-json", str(rep))
        assert p.returncode == 0, p.stderr
        import json

        r = json.loads(rep.read_text())
        assert r["ok"] and r["max_abs_diff"] <= 1e-5
        assert {(s["height"], s["width"]) for s in r["sizes"]} >= {(256, 256), (272, 480)}
        prov = r["run_provenance"]
        assert prov["inputs"][0]["sha256"] == _sha(ckpts[arch])
        assert prov["versions"]["onnxruntime"] and prov["versions"]["torch"] and prov["timestamp_utc"]


def test_parity_fails_for_mismatched_weights(
    ckpts: dict[str, Path], onnx_files: dict[str, Path], tmp_path: Path
) -> None:
    from tinysal.model.nets import create_model, save_checkpoint

    torch.manual_seed(99)
    other = tmp_path / "other.pt"
    save_checkpoint(other, create_model("saliency_student_v2"), "saliency_student_v2")
    out = tmp_path / "r.json"
    p = run_cli("tinysal", "parity", str(other), str(onnx_files["saliency_student_v2"]), "--out-json", str(out))
    assert p.returncode == 1 and "parity failed" in p.stderr and "Traceback" not in p.stderr


# ------------------------------------------------------------------------------------------- bad input
def _tiny_model(
    op: str = "Relu", domain: str = "", in_name: str = "input", out_name: str = "saliency_map", channels: int = 3
) -> onnx.ModelProto:
    x = helper.make_tensor_value_info(in_name, TensorProto.FLOAT, [1, channels, "h", "w"])
    y = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [1, 1, "h", "w"])
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, channels, 1, 1], [1.0 / channels] * channels)
    nodes = [
        helper.make_node("Conv", [in_name, "w"], ["c"], name="conv"),
        helper.make_node(op, ["c"], [out_name], name="act", domain=domain),
    ]
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=opsets)


def _loop_model() -> onnx.ModelProto:
    m = _tiny_model("Sigmoid")
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="inner_identity"),
            helper.make_node("Relu", ["v_in"], ["v_out"], name="inner_relu"),
        ],
        "body",
        [
            helper.make_tensor_value_info("iter", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None),
        ],
    )
    g = m.graph
    g.node[1].output[0] = "s"
    g.initializer.extend(
        [
            helper.make_tensor("trip", TensorProto.INT64, [], [1]),
            helper.make_tensor("cond", TensorProto.BOOL, [], [True]),
        ]
    )
    g.node.append(helper.make_node("Loop", ["trip", "cond", "s"], ["saliency_map"], name="the_loop", body=body))
    return m


def test_allowlist_flags_loop_with_node_name(tmp_path: Path) -> None:
    p_ = tmp_path / "loop.onnx"
    p_.write_bytes(_loop_model().SerializeToString())
    p = run_cli("tinysal", "check-ops", str(p_))
    assert p.returncode == 1
    assert "Loop" in p.stderr and "the_loop" in p.stderr and "Traceback" not in p.stderr


def test_allowlist_walks_subgraphs() -> None:
    from tinysal.model.checks import check_ops

    m = _loop_model()
    body = m.graph.node[-1].attribute[0].g
    body.node[1].op_type = "Elu"  # a disallowed op hidden inside the loop body
    rep = check_ops(m)
    names = {o["node"] for o in rep["offending_ops"]}
    assert "the_loop" in names and "the_loop/inner_relu" in names


def test_a_disallowed_op_is_one_line_however_many_nodes_use_it() -> None:
    from tinysal.model.checks import check_ops, describe_failures

    m = _loop_model()
    body = m.graph.node[-1].attribute[0].g
    body.node[1].op_type = "Elu"
    body.node.append(helper.make_node("Elu", ["v_out"], ["v_more"], name="second_elu"))
    body.node.append(helper.make_node("Elu", ["v_more"], ["v_most"], name="third_elu"))
    lines = describe_failures(check_ops(m))
    elu = [ln for ln in lines if "::Elu" in ln]
    assert elu == ["disallowed op ai.onnx::Elu at node the_loop/inner_relu (and 2 more)"], lines
    assert any("::Loop at node the_loop" in ln and "more" not in ln for ln in lines), lines


def test_allowlist_flags_custom_domain(tmp_path: Path) -> None:
    p_ = tmp_path / "custom.onnx"
    p_.write_bytes(_tiny_model("FancyAct", domain="com.example").SerializeToString())
    p = run_cli("tinysal", "check-ops", str(p_))
    assert p.returncode != 0 and "com.example" in p.stderr and "Traceback" not in p.stderr


def test_wrong_io_names(tmp_path: Path) -> None:
    p_ = tmp_path / "names.onnx"
    p_.write_bytes(_tiny_model("Sigmoid", in_name="images", out_name="prob").SerializeToString())
    p = run_cli("tinysal", "check-ops", str(p_))
    assert p.returncode == 1 and "input names" in p.stderr and "output names" in p.stderr


def test_clean_model_passes() -> None:
    from tinysal.model.checks import check_ops

    assert check_ops(_tiny_model("Sigmoid"))["ok"]


@pytest.mark.parametrize("case", ["missing", "not_onnx", "truncated", "empty"])
def test_unreadable_models(case: str, tmp_path: Path, smoke_model: Path) -> None:
    p_ = tmp_path / "m.onnx"
    if case == "not_onnx":
        p_.write_text("this is not a model\n" * 20)
    elif case == "truncated":
        p_.write_bytes(smoke_model.read_bytes()[:5000])
    elif case == "empty":
        p_.write_bytes(b"")
    out = tmp_path / "report.json"
    for cmd in (["check-ops", str(p_), "--out-json", str(out)], ["validate-model", str(p_), "--out-json", str(out)]):
        p = run_cli("tinysal", *cmd)
        assert_clean_error(p, "not found" if case == "missing" else "onnx")
        assert not out.exists()


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_data_outside_folder_is_refused(location: str, tmp_path: Path, smoke_model: Path) -> None:
    m = onnx.load(str(smoke_model))
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    del t.float_data[:]
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    d = tmp_path / "models"
    d.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4096)
    p_ = d / "ext.onnx"
    p_.write_bytes(m.SerializeToString())
    p = run_cli("tinysal", "check-ops", str(p_))
    assert_clean_error(p, "refusing external data location")


def test_pickled_checkpoint_is_refused(tmp_path: Path) -> None:
    from tinysal.model.nets import create_model

    evil = tmp_path / "evil.pt"
    torch.save(create_model("saliency_student_v2"), evil)  # a whole pickled module, not weights
    out = tmp_path / "x.onnx"
    p = run_cli("tinysal", "export", str(evil), "--output", str(out))
    assert_clean_error(p, "weights_only")
    assert not out.exists()


def test_missing_and_garbage_checkpoints(tmp_path: Path) -> None:
    out = tmp_path / "x.onnx"
    assert_clean_error(run_cli("tinysal", "export", str(tmp_path / "nope.pt"), "-o", str(out)), "not found")
    g = tmp_path / "garbage.pt"
    g.write_bytes(b"\x80\x04garbage" * 10)
    assert_clean_error(run_cli("tinysal", "export", str(g), "-o", str(out)), "cannot load checkpoint")
    assert not out.exists()


def test_smoke_export_from_random_init_is_reproducible(tmp_path: Path, smoke_model: Path) -> None:
    out = tmp_path / "smoke.onnx"
    p = run_cli("tinysal", "export", "--random-init", "saliency_student_v2", "--seed", "0", "-o", str(out))
    assert p.returncode == 0 and "smoke" in p.stderr
    assert _sha(out) == _sha(smoke_model)  # the shipped smoke entry is exactly this
