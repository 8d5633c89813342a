"""Property-based fuzzing (hypothesis): any byte string or parameter string gives a result or one clear
TinysalError, never another exception."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tinysal.errors import TinysalError  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_TMP = Path(tempfile.mkdtemp(prefix="tinysal-fuzz-"))


def _read_all(reader) -> int:  # noqa: ANN001
    n = 0
    for fr in reader.frames():
        assert fr.y.shape == (reader.height, reader.width)
        n += 1
    return n


def _header() -> st.SearchStrategy[bytes]:
    tag = st.one_of(
        st.builds(lambda v: b"W" + v, st.sampled_from([b"16", b"8", b"0", b"-4", b"x", b"", b"99999999999", b"1e3"])),
        st.builds(lambda v: b"H" + v, st.sampled_from([b"16", b"8", b"7", b"abc", b""])),
        st.builds(lambda v: b"F" + v, st.sampled_from([b"25:1", b"0:0", b"25", b":", b"a:b", b"30000:1001"])),
        st.builds(lambda v: b"A" + v, st.sampled_from([b"1:1", b"0:0", b"x", b""])),
        st.builds(lambda v: b"C" + v, st.sampled_from([b"420", b"422", b"444", b"420p10", b"mono", b"411", b""])),
        st.sampled_from([b"Ip", b"XCOLORRANGE=FULL", b"XYSCSS=420JPEG", b"Z"]),
        st.binary(max_size=6),
    )
    return st.builds(lambda tags: b"YUV4MPEG2 " + b" ".join(tags) + b"\n", st.lists(tag, max_size=6))


@FUZZ
@given(header=_header(), body=st.binary(max_size=2000), frame_hdr=st.sampled_from([b"FRAME\n", b"FRAME Ix\n", b"FR"]))
def test_y4m_reader_never_crashes(header: bytes, body: bytes, frame_hdr: bytes) -> None:
    from tinysal.video.readers import Y4mReader

    p = _TMP / "f.y4m"
    p.write_bytes(header + frame_hdr + body)
    try:
        r = Y4mReader(p)
        assert _read_all(r) == r.frame_count
    except TinysalError as e:
        assert str(e) and "\n" not in str(e)


@FUZZ
@given(
    data=st.binary(max_size=4000),
    w=st.integers(-2, 40),
    h=st.integers(-2, 40),
    fmt=st.sampled_from(["420", "422", "444", "400", "411", "yuv420p"]),
    bits=st.sampled_from([8, 10, 12, 0]),
)
def test_raw_yuv_reader_never_crashes(data: bytes, w: int, h: int, fmt: str, bits: int) -> None:
    from tinysal.video.readers import RawYuvReader, parse_pix_fmt

    p = _TMP / "f.yuv"
    p.write_bytes(data)
    try:
        r = RawYuvReader(p, w, h, parse_pix_fmt(fmt), bits)
        assert _read_all(r) == r.frame_count
    except TinysalError as e:
        assert str(e) and "\n" not in str(e)


@FUZZ
@given(items=st.lists(st.text(max_size=40), max_size=4))
def test_feature_params_parsing_never_crashes(items: list[str]) -> None:
    from tinysal.features.mobilesal import FEATURE_PARAMS, parse_feature_params

    try:
        out = parse_feature_params(items)
    except TinysalError as e:
        assert str(e)
        return
    assert all(isinstance(k, str) and isinstance(v, dict) for k, v in out.items())
    # and the values, given to the feature, are either accepted or refused in one line (no model loading:
    # only the parsing of numbers and switches is exercised here)
    from tinysal.features.mobilesal import parse_bool

    for params in out.values():
        for k, v in params.items():
            if k in ("extra_stats", "roi_score", "psnr_saliency"):
                try:
                    parse_bool(k, v)
                except TinysalError:
                    pass
    assert FEATURE_PARAMS


finite = st.floats(allow_nan=True, allow_infinity=True, width=64)


@FUZZ
@given(
    names=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4, unique=True),
    values=st.lists(finite, min_size=1, max_size=20),
    fmt=st.sampled_from(["json", "xml", "csv"]),
)
def test_output_writers_never_crash(names: list[str], values: list[float], fmt: str) -> None:
    import json
    import xml.etree.ElementTree as ET

    from tinysal.features.output import POOL_METHODS, RENDERERS, pool

    frames = [{"frameNum": i, "metrics": {n: v for n in names}} for i, v in enumerate(values)]
    pooled = {}
    for n in names:
        vals = [f["metrics"][n] for f in frames]
        pooled[n] = {}
        for m in POOL_METHODS:
            try:
                pooled[n][m] = pool(vals, m)
            except (ValueError, ZeroDivisionError, OverflowError) as e:  # noqa: PERF203
                pytest.fail(f"pool({m}) raised {e!r}")
    result = {"version": "t", "fps": float("nan"), "frames": frames, "pooled_metrics": pooled,
              "aggregate_metrics": {}, "width": 4, "height": 4}  # fmt: skip
    try:
        text = RENDERERS[fmt](result)
    except TinysalError as e:  # a name XML cannot carry: refused in one line
        assert fmt == "xml" and "cannot be written as XML" in str(e)
        return
    if fmt == "json":
        doc = json.loads(text)
        for f, v in zip(doc["frames"], values):
            got = f["metrics"][names[0]]
            assert (got is None) == (not math.isfinite(v))
    elif fmt == "xml":
        assert ET.fromstring(text).tag == "VMAF"
    else:
        import csv
        import io

        from tinysal.fileio import csv_safe

        rows = list(csv.reader(io.StringIO(text)))  # names a spreadsheet would evaluate are shown as text
        assert len(rows) == len(values) + 1 and rows[0][1:-1] == [csv_safe(n) for n in names]
        assert not any(c.startswith(("=", "+", "-", "@")) for c in rows[0])


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> object:
    yield
    for f in _TMP.iterdir():
        f.unlink()
    _TMP.rmdir()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["trace", "epoch", "val_iou", "best", "stages", "models", "val_groups", "id", "a", "crop"]),
        children,
        max_size=5,
    ),
    max_leaves=20,
)


@FUZZ
@given(doc=_json, depth=st.sampled_from([0, 0, 0, 5000]))
def test_json_readers_never_crash(doc: object, depth: int) -> None:
    """plot-run's run reader, the registry validator and calibrate's metrics check: any JSON (also JSON nested
    deeper than the parser's stack) is read or refused with one TinysalError."""
    import json

    from tinysal.cli.commands.calibrate import run as cmd_calibrate
    from tinysal.cli.main import build_parser
    from tinysal.model.validate import validate_registry
    from tinysal.train.curves import load_run

    path = _TMP / "doc.json"
    path.write_text("[" * depth + json.dumps(doc) + "]" * depth)
    for read in (load_run, validate_registry):
        try:
            read(str(path))
        except TinysalError:
            pass
    args = build_parser().parse_args(["calibrate", str(_TMP / "no.pt"), str(_TMP), "--metrics", str(path), "-o",
                                      str(_TMP / "c.pt")])  # fmt: skip
    with pytest.raises(TinysalError):  # never a TypeError/AttributeError on an oddly shaped document
        cmd_calibrate(args)


_dtypes = st.sampled_from(["uint8", "uint16", "int64", "float32", "float64", "complex64", "int8", "bool"])


@FUZZ
@given(
    h=st.integers(0, 9), w=st.integers(0, 9), ch=st.integers(0, 9), cw=st.integers(0, 9), dt=_dtypes,
    fill=st.sampled_from([0, 1, 128, 1023, 1024, 60000, -5, 0.5]),
)  # fmt: skip
def test_api_planes_are_checked(h: int, w: int, ch: int, cw: int, dt: str, fill: float) -> None:
    """as_frame takes integer code values of a real shape, or says what is wrong; what it accepts is in range."""
    import numpy as np

    from tinysal.features.scoring import as_frame

    with np.errstate(all="ignore"):
        y = np.full((h, w), fill).astype(dt)
        u = np.full((ch, cw), fill).astype(dt)
    try:
        fr = as_frame((y, u, u.copy()))
    except TinysalError:
        return
    assert fr.y.dtype in (np.uint8, np.uint16) and fr.y.size > 0
    assert int(fr.y.max()) <= (255 if fr.bitdepth == 8 else 1023)
