"""Bad sources of `yolox predict` (issue 13): URLs (loopback HTTP server: 404, refused, too large announced or
streamed, not an image, cut short, too slow, no host, another scheme) and videos (not a video, no frames, cut
short). One `yolox predict` run (in this process, the authors' nano at 128 px) takes every source at once, good
and bad; each case asserts its exact skip record (or its note) and that every good source of the run survives.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from helpers.cli_runner import yolox
from helpers.http import serve_folder
from helpers.media_sources import make_video

IMAGES = ("000000000025.jpg", "000000000030.jpg", "000000000034.jpg", "000000000036.jpg")  # giraffes, vase, ...


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, coco128_dir: Path, nano_pth: Path) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("faults_predict_sources")
    coco = coco128_dir / "images" / "train2017"
    served = root / "served"
    served.mkdir()
    for name in IMAGES:
        shutil.copy(coco / name, served / name)
    (served / "page.html").write_text("<html><body>not an image</body></html>\n")
    (served / "cut.jpg").write_bytes((coco / IMAGES[1]).read_bytes()[:15_000])
    big = cv2.resize(cv2.imread(str(coco / IMAGES[0])), (2000, 1500))
    cv2.imwrite(str(served / "big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert (served / "big.jpg").stat().st_size > 0.5 * 2**20 > max((coco / n).stat().st_size for n in IMAGES)
    make_video(served / "clip.avi", [coco / n for n in IMAGES[:3]], (160, 120))
    local = root / "local"
    local.mkdir()
    shutil.copy(coco / IMAGES[2], local / "good.jpg")
    make_video(local / "good.mp4", [coco / n for n in IMAGES], (192, 144))
    (local / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    make_video(local / "empty.avi", [], (64, 48))                                  # a header, no frame
    whole = make_video(root / "whole.avi", [coco / n for n in IMAGES] * 2, (160, 120))
    (local / "cut_short.avi").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    w = SimpleNamespace(root=root, served=served, local=local, nano_pth=nano_pth)
    with serve_folder(served) as url:
        w.url = url
        w.sources = {
            "good-url": f"{url}/files/{IMAGES[3]}",
            "good-url-video": f"{url}/files/clip.avi",
            "good-local": str(local),
            "url-404": f"{url}/files/missing.jpg",
            "url-bad-path": f"{url}/nothing/here",
            "url-not-an-image": f"{url}/files/page.html",
            "url-truncated-jpeg": f"{url}/files/cut.jpg",
            "url-too-large": f"{url}/files/big.jpg",
            "url-too-large-streamed": f"{url}/stream/big.jpg",
            "url-timeout": f"{url}/late/{IMAGES[0]}",
            "url-refused": "http://127.0.0.1:9/x.jpg",
            "url-no-host": "http:///x.jpg",
            "url-unsupported-scheme": "ftp://127.0.0.1/x.jpg",
            "url-file-scheme": f"file://{local / 'good.jpg'}",
        }
        args = ["predict", "--weights", nano_pth, "--model", "yolox-nano", "--img-size", 128, "--out", root / "out",
                "--set", "predict.download_max_mb=0.5", "--set", "predict.download_timeout_s=1"]
        for s in w.sources.values():
            args += ["--source", s]
        w.code, w.output = yolox(*args, cwd=root)
        w.all_bad_code, w.all_bad_output = yolox(
            "predict", "--weights", nano_pth, "--model", "yolox-nano", "--img-size", 128, "--out", root / "out_bad",
            "--source", w.sources["url-404"], "--source", local / "garbage.mp4", "--source", "ftp://x/y.jpg", cwd=root)
    w.json = json.loads((root / "out" / "predictions.json").read_text()) if (root / "out").is_dir() else {}
    return w


LIMIT = "0.5 MB (predict.download_max_mb)"
SKIP_CASES = {
    # kind: (source key or local file, reason, detail; a callable gets the workspace)
    "url-404": ("url-404", "download failed", "HTTP 404 File not found"),
    "url-bad-path": ("url-bad-path", "download failed", "HTTP 404 File not found"),
    "url-not-an-image": ("url-not-an-image", "not a decodable image", "cannot read the image header"),
    "url-truncated-jpeg": ("url-truncated-jpeg", "truncated JPEG", "no end-of-image marker: the file is cut short"),
    "url-too-large": ("url-too-large", "download too large",
                      lambda w: f"Content-Length {(w.served / 'big.jpg').stat().st_size} bytes: more than {LIMIT}"),
    "url-too-large-streamed": ("url-too-large-streamed", "download too large",
                               f"the body passed {LIMIT}: stopped there"),
    "url-timeout": ("url-timeout", "download failed", "no answer within 1 s (predict.download_timeout_s)"),
    "url-refused": ("url-refused", "download failed", "Connection refused"),
    "url-no-host": ("url-no-host", "download failed", "the URL names no host"),
    "url-unsupported-scheme": ("url-unsupported-scheme", "unsupported source",
                               "scheme 'ftp': only http and https URLs are fetched"),
    "url-file-scheme": ("url-file-scheme", "unsupported source", "scheme 'file': only http and https URLs are fetched"),
    "video-not-decodable": ("garbage.mp4", "not a decodable video", "OpenCV (FFmpeg) cannot open it as a video"),
    "video-zero-frames": ("empty.avi", "video without frames", "OpenCV opens it but reads no frame"),
}


def _skipped(w: SimpleNamespace) -> dict[str, dict[str, str]]:
    return {s["image"]: s for s in w.json["skipped"]}


def _survivors(w: SimpleNamespace) -> None:
    """Every good source of the run was predicted: the URL image, the URL video, the local image and video, and
    the cut-short video (its frames up to the cut)."""
    assert w.code == 0, w.output[-3000:]
    images = {r["image"]: r for r in w.json["images"]}
    videos = {v["video"]: v for v in w.json["videos"]}
    assert set(images) == {w.sources["good-url"], str(w.local / "good.jpg")}
    assert set(videos) == {w.sources["good-url-video"], str(w.local / "good.mp4"), str(w.local / "cut_short.avi")}
    assert any(d["class_name"] == "person" for d in images[w.sources["good-url"]]["detections"])
    assert [len(videos[str(w.local / "good.mp4")]["frames"]), len(videos[w.sources["good-url-video"]]["frames"])] \
        == [4, 3]
    for v in videos.values():
        assert Path(v["drawn"]).is_file() and Path(v["drawn"]).parent == w.root / "out"
    assert len(w.json["skipped"]) == len(SKIP_CASES)


@pytest.mark.parametrize("kind", [pytest.param(k, id=f"predict-{k}") for k in SKIP_CASES])
def test_bad_source_is_a_reported_skip(ws: SimpleNamespace, kind: str) -> None:
    key, reason, detail = SKIP_CASES[kind]
    source = ws.sources.get(key) or str(ws.local / key)
    detail = detail(ws) if callable(detail) else detail
    assert _skipped(ws)[source] == {"image": source, "reason": reason, "detail": detail}
    assert f"skipped {source}: {reason} ({detail})" in ws.output  # the log line
    _survivors(ws)


@pytest.mark.parametrize("case", [pytest.param(None, id="predict-video-cut-short")])
def test_video_cut_short_keeps_its_frames_with_a_note(ws: SimpleNamespace, case: None) -> None:
    """A video cut in the middle is predicted up to the cut, with a note (in the JSON and the log)."""
    video = {v["video"]: v for v in ws.json["videos"]}[str(ws.local / "cut_short.avi")]
    n = len(video["frames"])
    assert 0 < n < 8 and video["note"] == f"read {n} of the 8 frames its header announces (cut short?)"
    assert f"{ws.local / 'cut_short.avi'}: read {n} of the 8 frames" in ws.output
    _survivors(ws)


def test_summary_line(ws: SimpleNamespace) -> None:
    """The summary counts images, video frames and skips."""
    _survivors(ws)
    frames = sum(len(v["frames"]) for v in ws.json["videos"])
    assert f"on 2 images and {frames} frames of 3 videos -> {ws.root / 'out'} (predictions.json, " \
           f"{len(SKIP_CASES)} skipped (listed in it))" in ws.output


@pytest.mark.parametrize("case", [pytest.param(None, id="predict-all-sources-bad")])
def test_all_sources_bad(ws: SimpleNamespace, case: None) -> None:
    """Nothing readable among several sources: exit 1 with one line naming the skip reasons (JSON written)."""
    assert ws.all_bad_code == 1
    lines = [line for line in ws.all_bad_output.splitlines() if line.startswith("error:")]
    assert lines == [(f"error: no image of the 3 sources could be read (3 skipped: download failed, not a decodable "
                      f"video, unsupported source); see {ws.root / 'out_bad' / 'predictions.json'}")]
    assert "Traceback" not in ws.all_bad_output
    assert len(json.loads((ws.root / "out_bad" / "predictions.json").read_text())["skipped"]) == 3
