"""``tinysal report``: one self-contained HTML page over a batch's records (or an auto-encode / ladder work dir, or
crf-search / auto-encode / ladder JSON documents) that people would rather look at than read.

The page holds everything (no network: no CDN script, font or image; the figures are SVG drawn by its own script,
the contact sheets inline JPEG). It opens fast for 10,000 jobs because the table's rows are one embedded JSON
array rendered a page at a time (sorting and filtering work on the array, not the DOM), and each job's details
(per-frame curves, attempts, shots, rungs) sit in their own JSON block, parsed only when its section is opened;
curves longer than :data:`CURVE_POINTS` are reduced to that many points (each point the lowest VMAF of its frames,
so a drop is never smoothed away). bench/bench_report.py measures it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinysal.errors import TinysalError

#: the most points a per-frame curve keeps in the page
CURVE_POINTS = 600
#: frames shown in a contact sheet (the lowest-VMAF ones)
SHEET_FRAMES = 6
#: the table's columns: (key, heading)
COLUMNS = (("id", "id"), ("task", "task"), ("status", "status"), ("codec", "codec"), ("crf", "CRF"),
           ("video_kbps", "video kbit/s"), ("total_kbps", "total kbit/s"), ("vmaf_mean", "VMAF mean"),
           ("vmaf_min", "VMAF min"), ("vmaf_p5", "VMAF p5"), ("vmaf_roi", "vmaf_roi"), ("xpsnr", "XPSNR"),
           ("saliency_mean", "saliency_mean"), ("seconds", "wall s"))  # fmt: skip


@dataclass
class Collected:
    rows: list[dict[str, Any]] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)


def _num(v: Any, digits: int = 6) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(f"{v:.{digits}g}")


def _curve(values: list[float], lowest: bool = True) -> list[list[float]]:
    """[[frame, value], ...] with at most CURVE_POINTS points: each the lowest (or mean) of its frames."""
    n = len(values)
    if n <= CURVE_POINTS:
        return [[i, round(v, 3)] for i, v in enumerate(values)]
    out = []
    for k in range(CURVE_POINTS):
        a, b = k * n // CURVE_POINTS, (k + 1) * n // CURVE_POINTS
        chunk = values[a:b]
        i = a + (chunk.index(min(chunk)) if lowest else len(chunk) // 2)
        out.append([i, round(min(chunk) if lowest else sum(chunk) / len(chunk), 3)])
    return out


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    from tinysal.features.output import pool

    return pool(values, f"p{q:g}")


def _frames(result: dict[str, Any]) -> dict[str, list[float]]:
    """metric -> per-frame values of a libvmaf-layout document."""
    out: dict[str, list[float]] = {}
    for fr in result.get("frames") or []:
        for k, v in (fr.get("metrics") or {}).items():
            if isinstance(v, (int, float)):
                out.setdefault(k, []).append(float(v))
    return out


def _xpsnr(pooled: dict[str, Any]) -> float | None:
    comps = [pooled[k]["mean"] for k in ("xpsnr_y", "xpsnr_u", "xpsnr_v") if isinstance(pooled.get(k), dict)]
    return min(comps) if comps else None


def _score(rec: dict[str, Any], row: dict[str, Any], det: dict[str, Any]) -> None:
    res = rec.get("result") or {}
    opts = rec.get("options") or {}
    pooled = res.get("pooled_metrics") or {}
    frames = _frames(res)
    vm = frames.get("vmaf", [])
    row.update(vmaf_mean=(pooled.get("vmaf") or {}).get("mean"), vmaf_min=(pooled.get("vmaf") or {}).get("min"),
               vmaf_p5=_percentile(vm, 5), vmaf_roi=(pooled.get("vmaf_roi") or {}).get("mean"),
               xpsnr=_xpsnr(pooled), saliency_mean=(pooled.get("saliency_mean") or {}).get("mean"))  # fmt: skip
    det["clip"] = f"{Path(str(opts.get('distorted', '?'))).name} against {Path(str(opts.get('reference', '?'))).name}"
    det["curves"] = {k: _curve(v, k != "saliency_mean") for k, v in frames.items()
                     if k in ("vmaf", "vmaf_roi", "saliency_mean", "xpsnr_y")}  # fmt: skip
    det["files"] = {"reference": opts.get("reference"), "distorted": opts.get("distorted")}
    det["model"] = ", ".join(m.split("=", 1)[-1].split(":")[0] for m in opts.get("model") or []) or "vmaf_v0.6.1"
    sal = ((res.get("run_provenance") or {}).get("saliency_model") or {}) if "saliency_mean" in frames else {}
    if isinstance(sal, dict) and sal.get("id"):
        det["saliency_model"] = sal["id"]
    if vm:
        det["worst"] = sorted(range(len(vm)), key=lambda i: vm[i])[:SHEET_FRAMES]
        det["frame_nums"] = [int(f.get("frameNum", i)) for i, f in enumerate(res.get("frames") or [])]


def _search(rec: dict[str, Any], row: dict[str, Any], det: dict[str, Any]) -> None:
    res = rec.get("result") or {}
    pred = res.get("predicted") or {}
    row.update(crf=res.get("crf"), vmaf_mean=pred.get("vmaf"), vmaf_roi=pred.get("vmaf_roi"), xpsnr=pred.get("xpsnr"))
    if row.get("video_kbps") is None:  # no --encode: the search's prediction
        row["video_kbps"] = pred.get("video_kbps")
    det["attempts"] = [{k: a.get(k) for k in ("crf", "roi_strength", "vmaf", "vmaf_roi", "xpsnr", "video_kbps",
                                              "passed")} for a in res.get("attempts") or []]  # fmt: skip
    det["targets"] = res.get("targets")
    det["clip"] = Path(str(res.get("input", ""))).name


def _shot(rec: dict[str, Any], row: dict[str, Any], det: dict[str, Any]) -> None:
    res = rec.get("result") or {}
    m = res.get("measured") or {}
    vm = m.get("frames") or []
    row.update(crf=res.get("crf"), vmaf_mean=m.get("vmaf"), vmaf_min=m.get("vmaf_min"), vmaf_p5=_percentile(vm, 5),
               vmaf_roi=m.get("vmaf_roi"), xpsnr=m.get("xpsnr"))  # fmt: skip
    det["curves"] = {"vmaf": _curve(vm)} if vm else {}
    det["attempts"] = [{k: a.get(k) for k in ("crf", "roi_strength", "vmaf", "vmaf_roi", "xpsnr", "video_kbps",
                                              "passed")} for a in res.get("attempts") or []]  # fmt: skip
    det["clip"] = f"shot at frame {res.get('start_frame')} ({res.get('frames')} frames)"


def _title(rec: dict[str, Any], row: dict[str, Any], det: dict[str, Any]) -> None:
    res = rec.get("result") or {}
    t = res.get("totals") or {}
    row.update(crf=res.get("crf"), vmaf_mean=t.get("vmaf"), vmaf_min=t.get("vmaf_min"), vmaf_roi=t.get("vmaf_roi"))
    det["shots"] = [{"start": s.get("start_frame"), "frames": s.get("frames"), "crf": s.get("crf"),
                     "vmaf": (s.get("measured") or s.get("predicted") or {}).get("vmaf"),
                     "vmaf_roi": (s.get("measured") or s.get("predicted") or {}).get("vmaf_roi"),
                     "video_kbps": s.get("video_kbps"), "reached": s.get("reached")}
                    for s in res.get("shots") or []]  # fmt: skip
    det["targets"] = res.get("targets")
    det["clip"] = Path(str(res.get("input", ""))).name


def _rung(rec: dict[str, Any], row: dict[str, Any], det: dict[str, Any]) -> None:
    res = rec.get("result") or {}
    row.update(crf=res.get("crf"), vmaf_mean=res.get("vmaf"), vmaf_roi=res.get("vmaf_roi"))
    det["rung"] = {k: res.get(k) for k in ("height", "crf", "roi_strength", "video_kbps", "vmaf", "vmaf_roi")}


READERS = {"score": _score, "crf-search": _search, "shot": _shot, "auto-encode": _title, "rung": _rung}


def _from_record(rec: dict[str, Any], c: Collected, where: str) -> None:
    if not isinstance(rec, dict) or not isinstance(rec.get("id"), str) or not isinstance(rec.get("task"), str):
        raise ValueError("not a tinysal job record (no id or task)")
    opts, info = rec.get("options") or {}, rec.get("info") or {}
    row: dict[str, Any] = {"id": rec["id"], "task": rec["task"], "status": rec.get("status"),
                           "error": rec.get("error"), "codec": opts.get("codec"), "crf": info.get("crf"),
                           "video_kbps": info.get("video_kbps"), "total_kbps": info.get("total_kbps"),
                           "seconds": rec.get("seconds")}  # fmt: skip
    det: dict[str, Any] = {"source": where}
    if isinstance(info.get("output"), str):
        det["output"] = info["output"]
    if rec.get("status") == "done" and rec["task"] in READERS:
        READERS[rec["task"]](rec, row, det)
    ver = ((rec.get("versions") or {}).get("tinysal")) or "unknown"
    c.versions[ver] = c.versions.get(ver, 0) + 1
    _add(c, row, det)


def _add(c: Collected, row: dict[str, Any], det: dict[str, Any]) -> None:
    row = {k: (_num(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in row.items()}
    row["n"] = len(c.rows)
    c.rows.append(row)
    c.details.append(det)


def _from_document(doc: dict[str, Any], c: Collected, where: str) -> None:
    """A crf-search, auto-encode or ladder ``--out-json`` document as a row of its own."""
    name = Path(where).stem
    if "hulls" in doc and "points" in doc:  # a ladder
        row = {"id": name, "task": "ladder", "status": "done", "codec": doc.get("codec")}
        det = {"source": where, "points": doc["points"], "hulls": doc.get("hulls"), "clip": name}
        _add(c, row, det)
        return
    kind = "auto-encode" if "shots" in doc and "totals" in doc else "crf-search" if "attempts" in doc else None
    if kind is None:
        raise ValueError("not a crf-search, auto-encode or ladder document")
    row: dict[str, Any] = {"id": name, "task": kind, "status": "done", "codec": doc.get("codec")}
    det: dict[str, Any] = {"source": where}
    READERS[kind]({"result": doc}, row, det)
    if kind == "auto-encode":
        row.update(video_kbps=doc["totals"].get("video_kbps"), total_kbps=doc["totals"].get("total_kbps"))
    _add(c, row, det)


def _record_files(folder: Path) -> list[Path]:
    """The job records of a batch's --out folder, or of the batches inside an auto-encode or ladder work dir."""
    if (folder / "jobs").is_dir():
        return sorted((folder / "jobs").glob("*.json"))
    found = []
    for sub in ("batch", "budget"):
        if (folder / sub / "jobs").is_dir():
            found += sorted((folder / sub / "jobs").glob("*.json"))
    return found


def _join_encodes(c: Collected) -> None:
    """A score row whose distorted file is another row's encode (encode -> score in one manifest) shows that
    encode's codec, CRF and kbit/s beside its scores."""
    made = {os.path.realpath(d["output"]): r for r, d in zip(c.rows, c.details) if d.get("output")}
    for r, d in zip(c.rows, c.details):
        enc = made.get(os.path.realpath(str((d.get("files") or {}).get("distorted") or "")))
        if enc is not None:
            for k in ("codec", "crf", "video_kbps", "total_kbps"):
                if r.get(k) is None:
                    r[k] = enc.get(k)
            d["encoded_by"] = enc["id"]


def collect(paths: list[str]) -> Collected:
    """Every readable record or document under ``paths``; what cannot be read is listed in ``problems``."""
    c = Collected()
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files = _record_files(path)
            if not files:
                raise TinysalError(f"{path}: not a batch output (no jobs/ folder of records), nor an auto-encode or "
                                   "ladder work dir")  # fmt: skip
            kinds = [(f, _from_record) for f in files]
        elif path.is_file():
            kinds = [(path, _from_document)]
        else:
            raise TinysalError(f"{path}: no such file or folder")
        c.sources.append(str(path))
        for f, read in kinds:
            try:
                doc = json.loads(f.read_text(encoding="utf-8"))
                read(doc, c, str(f))
            except (OSError, UnicodeDecodeError) as e:
                c.problems.append(f"{f}: cannot be read ({e.__class__.__name__})")
            except (ValueError, RecursionError) as e:  # truncated, not JSON, or not ours
                why = "truncated or not JSON" if isinstance(e, json.JSONDecodeError) else str(e)
                c.problems.append(f"{f}: not reported: {why}")
            except (KeyError, TypeError, AttributeError):
                c.problems.append(f"{f}: not reported: a layout this tinysal does not know")
    if not c.rows:
        raise TinysalError("nothing to report: " + (c.problems[0] if c.problems else "no records"))
    _join_encodes(c)
    return c


def _contact_sheet(det: dict[str, Any], vmaf: list[float]) -> str | None:
    """A JPEG (data URI) of the distorted's lowest-VMAF frames beside the reference's, each labelled."""
    from PIL import Image, ImageDraw

    from tinysal.features.visual import frame_rgb
    from tinysal.video.readers import open_video

    want = sorted(det["frame_nums"][i] for i in det["worst"])
    labels = {det["frame_nums"][i]: vmaf[i] for i in det["worst"]}
    tiles: dict[str, dict[int, Any]] = {"distorted": {}, "reference": {}}
    for role in tiles:
        path = det["files"].get(role)
        if not path or not os.path.isfile(path) or Path(path).suffix.lower() == ".yuv":
            return None
        reader = open_video(path, None, None, None, None)
        for i, fr in enumerate(reader.frames()):
            if i > want[-1]:
                break
            if i in labels:
                tiles[role][i] = Image.fromarray(frame_rgb(fr, 240))
    if len(tiles["distorted"]) != len(want):
        return None
    w, h = tiles["distorted"][want[0]].size
    sheet = Image.new("RGB", (2 * w, len(want) * (h + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, i in enumerate(want):
        y = k * (h + 16)
        draw.text((4, y + 2), f"frame {i}: VMAF {labels[i]:.2f} (distorted | reference)", fill="black")
        sheet.paste(tiles["distorted"][i], (0, y + 16))
        if i in tiles["reference"]:
            sheet.paste(tiles["reference"][i], (w, y + 16))
    buf = io.BytesIO()
    sheet.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _sheets(c: Collected, n: int) -> int:
    """Contact sheets for the ``n`` score jobs with the lowest VMAF mean (decoding their frames); how many made."""
    scored = [r for r in c.rows if r.get("vmaf_mean") is not None and "worst" in c.details[r["n"]]]
    made = 0
    for r in sorted(scored, key=lambda r: r["vmaf_mean"])[:n]:
        det = c.details[r["n"]]
        vm = [p[1] for p in det["curves"].get("vmaf", [])]
        if len(vm) != len(det["frame_nums"]):
            continue  # a curve reduced to fewer points than frames: the labels would not match
        try:
            uri = _contact_sheet(det, vm)
        except (OSError, TinysalError, ValueError):
            uri = None
        if uri:
            det["sheet"] = uri
            made += 1
    return made


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element (no "</" to end it early)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def render(c: Collected, title: str) -> str:
    from tinysal import __version__

    page = (Path(__file__).parent / "report_page.html").read_text(encoding="utf-8")
    details = "\n".join(f'<script type="application/json" id="d{k}">{_script_json(d)}</script>'
                        for k, d in enumerate(c.details))  # fmt: skip
    meta = {"title": title, "columns": COLUMNS, "problems": c.problems, "versions": c.versions,
            "sources": c.sources, "tinysal": __version__}  # fmt: skip
    return (page.replace("{{TITLE}}", html.escape(title))
            .replace("{{META}}", _script_json(meta))
            .replace("{{ROWS}}", _script_json(c.rows))
            .replace("{{DETAILS}}", details))  # fmt: skip


def report(paths: list[str], output: str, title: str | None = None, contact_sheets: int = 12,
           quiet: bool = False) -> dict[str, Any]:  # fmt: skip
    """Write the page; a summary (jobs, problems, output)."""
    from tinysal import __version__
    from tinysal.fileio import atomic_open

    c = collect(paths)
    for p in c.problems:
        if not quiet:
            print(f"tinysal report: warning: {p}", file=sys.stderr)
    other = {v: n for v, n in c.versions.items() if v != __version__}
    if other and not quiet:
        print(f"tinysal report: warning: {sum(other.values())} records from another tinysal "
              f"({', '.join(sorted(other))}; this is {__version__}): reported as read", file=sys.stderr)  # fmt: skip
    sheets = _sheets(c, contact_sheets) if contact_sheets else 0
    with atomic_open(output, "w") as f:
        f.write(render(c, title or f"tinysal report: {', '.join(Path(p).name for p in paths)}"))
    return {"output": output, "jobs": len(c.rows), "problems": len(c.problems), "contact_sheets": sheets}
