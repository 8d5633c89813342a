"""The scoring core decides its route once (issue 38, item 7): a ScorePlan that every stage reads, and the FFmpeg
child's filtergraph as data (VmafGraph), checked here without running a process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT

SAMPLE = ROOT / "src" / "tinysal" / "samples" / "bigbuckbunny_360p.mp4"


def test_the_graphs_of_every_route_are_pure_data(tmp_path: Path) -> None:
    from tinysal.features.vmaf import RoiMerge, Source, Tap, VmafGraph, VmafModel

    nowhere = str(tmp_path / "not-made")
    d, r = Source("d.mp4"), Source("r.mp4")
    # plain libvmaf with XPSNR beside it: both read the same trimmed frames
    g = VmafGraph(d, r, 10, xpsnr=True)
    graph = g.graph("/t/log.json", nowhere)
    assert "[d]split=2[dv][dx];[r]split=2[rv][rx]" in graph and "[dx][rx]xpsnr=" in graph
    assert "[dv][rv]libvmaf=" in graph
    cmd = g.command("/t/log.json", nowhere)
    assert cmd[cmd.index("[xp]") - 1] == "-map" and "-nostdin" in cmd
    # a model given by path is named by a link in the model dir; building the graph touches no file
    (tmp_path / "m.json").write_text('{"model_dict": {}}')  # the parser checks it is a libvmaf model
    g = VmafGraph(d, r, 10, models=[VmafModel.parse(f"path={tmp_path / 'm.json'}")])
    assert f"path={nowhere}/model0.json" in g.graph("/t/log.json", nowhere)
    assert g.model_links(nowhere) == [(str(tmp_path / "m.json"), f"{nowhere}/model0.json")]
    assert not Path(nowhere).exists()
    # the masked merge at the reference's size: a smaller distorted is scaled before the merge
    merge = RoiMerge(640, 360, "420", 8, 256, 144)
    g = VmafGraph(d, r, 10, merge=merge, scale=(640, 360, "bicubic"), xpsnr=True)
    graph = g.graph("/t/log.json", nowhere)
    first = graph.split(";")[0]
    assert first.startswith("[0:v]trim=") and first.endswith("scale=w=640:h=360:flags=bicubic[d]")
    assert "maskedmerge" in graph and "xpsnr" not in graph and g.xpsnr is False  # XPSNR rides the plain pass only
    assert "pipe:0" in g.command("/t/log.json", nowhere)  # the maps come on stdin
    # the tap with the reference's frames: libvmaf still gets the scaled distorted
    tap = Tap(256, 144, 8, 1, "bilinear", None, reference=True)
    graph = VmafGraph(d, r, 10, tap=tap, scale=(640, 360, "bicubic")).graph("/t/log.json", nowhere)
    assert "[d0]scale=w=640:h=360:flags=bicubic[d]" in graph and "vstack=inputs=2[tap]" in graph


@pytest.mark.parametrize(
    ("features", "env", "route"),
    [
        ([], None, "libvmaf"),
        (["mobilesal"], None, "libvmaf + saliency from the FFmpeg child's small frames"),
        (["mobilesal:roi_score=1"], None,
         "libvmaf + saliency from the FFmpeg child's small frames + masked copy built in FFmpeg"),
        (["mobilesal:roi_score=1"], "0", "libvmaf + saliency from Python frames + masked copy from Python"),
    ],
)
def test_one_plan_names_the_route_that_ran(features: list[str], env: str | None, route: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from tinysal.features.pipeline import ONE_DECODE_ENV
    from tinysal.features.task import ScoreOptions, score

    if env is not None:
        monkeypatch.setenv(ONE_DECODE_ENV, env)
    res = score(ScoreOptions(reference=str(SAMPLE), distorted=str(SAMPLE), feature=features, frame_cnt=4))
    assert res.info["route"] == route
    assert res.result["pooled_metrics"]["vmaf"]["mean"] > 90


def test_the_context_records_through_public_methods() -> None:
    from tinysal.features.context import VmafContext

    ctx = VmafContext()
    ctx.record_metric("vmaf", {0: 90.0, 1: 80.0}, {"mean": 85.0, "min": 80.0, "max": 90.0, "harmonic_mean": 84.7})
    ctx.record_metric("xpsnr_y", {0: 40.0, 1: 30.0})
    ctx.set_geometry(640, 360, {"distorted": "320x180", "scaled_to": "640x360", "scaler": "bicubic"})
    res = ctx.result(25.0)
    assert list(res["pooled_metrics"]) == ["vmaf", "xpsnr_y"]
    assert res["pooled_metrics"]["vmaf"]["harmonic_mean"] == 84.7  # the producer's own pooled value kept
    assert res["pooled_metrics"]["xpsnr_y"]["mean"] == 35.0  # pooled by the writers
    assert (res["width"], res["height"], res["scaling"]["scaler"]) == (640, 360, "bicubic")
