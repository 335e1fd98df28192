"""i3d serve through a real uvicorn on 127.0.0.1 (an ephemeral port), and its page in a real headless browser."""

import concurrent.futures
import json
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from urllib import request

import numpy as np
import pytest

from conftest import numbered_frames, write_video

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from i3d.predict import Classifier  # noqa: E402
from i3d.serve.app import ServeConfig, create_app  # noqa: E402


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Running:
    def __init__(self, app) -> None:
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _post(url: str, path: Path | None, content_type: str = "video/mp4", fields: dict | None = None,
          body: bytes | None = None) -> tuple[int, dict, dict]:
    boundary = "i3dtestboundary"
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    data = body if body is not None else path.read_bytes()
    name = path.name if path is not None else "upload.mp4"
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                 f"Content-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    req = request.Request(url + "/v1/predict", data=b"".join(parts), method="POST",
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with request.urlopen(req, timeout=120) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, json.loads(response.read())
    except request.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, json.loads(error.read())


@pytest.fixture(scope="module")
def classifier(pretrained):
    return Classifier()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("serve") / "clip.mp4", numbered_frames(20, 64, 80), 25)


@pytest.fixture(scope="module")
def server(classifier):
    running = Running(create_app(ServeConfig(max_upload_mb=0.2, queue_size=1), classifier))
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def private_temporary_folder(tmp_path, monkeypatch):
    """Uploads land in a folder of this test's own: what a test finds left there is its server's, whatever
    other processes (other tests run beside this one) write to the system's temporary folder meanwhile."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))


def _uploads_left() -> list[str]:
    return [p.name for p in Path(tempfile.gettempdir()).glob("i3d-upload-*")]


def test_health_models_and_openapi(server):
    with request.urlopen(server.url + "/healthz") as response:
        assert json.loads(response.read())["status"] == "ok"
    with request.urlopen(server.url + "/v1/models") as response:
        models = json.loads(response.read())["models"]
        assert models[0]["classes"] == 400 and len(models[0]["labels"]) == 400
    with request.urlopen(server.url + "/openapi.json") as response:
        assert "/v1/predict" in json.loads(response.read())["paths"]


def test_predict_returns_what_the_command_prints(server, classifier, video):
    status, _, result = _post(server.url, video, fields={"top_k": "3", "timeline": "true"})
    assert status == 200
    expected = json.loads(classifier.predict(video).to_json(3))
    np.testing.assert_allclose(result["logits"], expected["logits"], atol=1e-6)
    assert result["top"][0]["label"] == expected["top"][0]["label"] and len(result["top"]) == 3
    assert result["timeline"]["windows"][0]["start_s"] == 0.0
    assert _uploads_left() == []


def test_requests_running_at_once_share_the_network_and_get_their_own_answers(classifier, video, tmp_path):
    """Several threads (4 by default beside a GPU, 1 beside a CPU): their clips go through shared network
    calls, and each request gets what predict alone says of its own video."""
    from concurrent.futures import ThreadPoolExecutor

    from i3d.serve.app import PredictionService

    assert PredictionService(ServeConfig(device="cpu")).threads == 1
    mirrored = write_video(tmp_path / "mirrored.mp4", numbered_frames(20, 64, 80)[:, :, ::-1], 25)
    shared = Classifier()
    running = Running(create_app(ServeConfig(threads=3, queue_size=4), shared))
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda path: _post(running.url, path), [video, mirrored, video, mirrored]))
    finally:
        running.stop()
    calls = shared._shared.calls
    assert shared._shared.max_clips == 3 and sum(n * k for n, k in calls.items()) == 4  # one window each
    for (status, _, result), path in zip(answers, [video, mirrored, video, mirrored]):
        assert status == 200
        np.testing.assert_allclose(result["logits"], classifier.predict(path).logits, atol=1e-4)


def test_bad_uploads_are_4xx_json_and_the_server_keeps_serving(server, video, tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video at all")
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(video.read_bytes()[:300])
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * 300_000)
    cases = [(tmp_path / "notes.mp4", "video/mp4", 422, "notes.mp4: cannot open as a video"),
             (truncated, "video/mp4", 422, "cut.mp4"),
             (video, "text/plain", 415, "is not a video"),
             (big, "video/mp4", 413, "passed 0.2 MB")]
    for path, content_type, code, message in cases:
        status, _, body = _post(server.url, path, content_type)
        assert (status, message in body["error"]) == (code, True), (path, status, body)
        assert "/tmp/" not in body["error"]  # never a server-side path
    status, _, body = _post(server.url, None, body=b"")
    assert status == 400 and "empty" in body["error"]
    status, _, body = _post(server.url, video, fields={"top_k": "abc"})  # FastAPI's own check, in our shape
    assert status == 422 and body["error"].startswith("top_k: Input should be a valid integer"), body
    assert _post(server.url, video)[0] == 200
    assert _uploads_left() == []


def test_a_full_queue_answers_429_with_retry_after(server, video):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _post(server.url, video), range(4)))
    codes = sorted(status for status, _, _ in answers)
    assert codes.count(200) >= 1 and codes.count(429) >= 1 and set(codes) <= {200, 429}
    assert all(headers.get("retry-after") == "5" for status, headers, _ in answers if status == 429)
    assert _post(server.url, video)[0] == 200


def test_the_page_is_self_contained(server):
    with request.urlopen(server.url + "/") as response:
        page = response.read().decode()
    assert "<script>" in page and "/v1/predict" in page
    assert "http://" not in page and "https://" not in page  # no CDN: it works offline


@pytest.mark.slow
def test_the_page_in_a_real_browser_shows_the_top_label(server, classifier, video, tmp_path):
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        pytest.fail("Debian's chromium is not installed; `make test` installs it")
    from playwright.sync_api import sync_playwright

    expected = classifier.predict(video).top(1)[0][0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1000, "height": 1100})
        page.goto(server.url + "/")
        page.set_input_files("#file", str(video))
        page.wait_for_selector("#bars .bar", timeout=120_000)
        assert page.inner_text("#bars .bar .label") == expected
        assert page.inner_text("#now") == f"Top class: {expected}"
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
    assert (tmp_path / "page.png").stat().st_size > 10_000


TOKEN = "a-token-of-some-length"


@pytest.fixture(scope="module")
def guarded(classifier):
    running = Running(create_app(ServeConfig(token=TOKEN), classifier))
    yield running
    running.stop()


def test_a_token_guards_every_api_call(guarded):
    for headers, status in [({}, 401), ({"Authorization": "Bearer wrong-token-of-some-len"}, 401),
                            ({"Authorization": f"Bearer {TOKEN}"}, 200)]:
        try:
            with request.urlopen(request.Request(guarded.url + "/v1/models", headers=headers)) as response:
                got, body = response.status, json.loads(response.read())
        except request.HTTPError as error:
            got, body = error.code, json.loads(error.read())
        assert got == status and (status == 200 or "Authorization: Bearer" in body["error"])
    with request.urlopen(guarded.url + "/healthz") as response:  # the page and health stay open
        assert response.status == 200


def test_an_address_other_than_loopback_needs_a_token(capsys):
    from i3d.cli.main import main

    assert main(["serve", "--host", "0.0.0.0", "--port", str(_free_port())]) == 2
    assert "give --token (or I3D_SERVE_TOKEN), or --no-auth" in capsys.readouterr().err
    assert main(["serve", "--token", "short"]) == 2
    assert "--token must be at least 16 characters" in capsys.readouterr().err


def _raw_request(port: int, head: bytes, body_parts: list[bytes], pause_s: float = 0.0) -> bytes:
    """Send a request byte for byte (a client the library clients cannot be: slow, lying about its length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head)
        for part in body_parts:
            conn.sendall(part)
            time.sleep(pause_s)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


@pytest.fixture(scope="module")
def guarded_uploads():
    """A server whose classifier is never reached: the guard answers first."""
    running = Running(create_app(ServeConfig(max_upload_mb=0.2, upload_idle_s=1.0), classifier=object()))
    yield running
    running.stop()


def test_an_upload_too_large_by_its_length_is_refused_before_it_is_read(guarded_uploads):
    head = (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 50000000\r\n\r\n")
    start = time.perf_counter()
    # the head alone: a byte of body sent after the server has answered and closed would be met with a reset,
    # which can discard the answer before the client reads it
    answer = _raw_request(guarded_uploads.port, head, [])
    assert answer.startswith(b"HTTP/1.1 413") and b'"error"' in answer and b"--max-upload-mb" in answer
    assert time.perf_counter() - start < 5


def test_a_slow_loris_upload_gets_408_and_leaves_nothing_behind(guarded_uploads):
    before = set(Path(tempfile.gettempdir()).iterdir())
    body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
            + bytes(2000))
    head = (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n")
    start = time.perf_counter()
    answer = _raw_request(guarded_uploads.port, head, [body])  # then nothing: the rest never comes
    assert answer.startswith(b"HTTP/1.1 408") and b"sent nothing for 1 s" in answer
    assert time.perf_counter() - start < 10
    time.sleep(0.5)
    assert set(Path(tempfile.gettempdir()).iterdir()) - before == set()
    with request.urlopen(guarded_uploads.url + "/healthz", timeout=10) as response:
        assert json.loads(response.read())["status"] == "ok"  # and the server serves on


def test_a_short_soak_answers_every_request_and_leaves_nothing_behind(tmp_path):
    """benchmarks/soak_serve.py at a small count: good and bad uploads, wrong tokens, cancelled and slow
    clients, concurrent then sequential; every status the one its kind expects, no temporary file left,
    open files back where they were, the server alive."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from bench_many_videos import random_weights
    from soak_serve import soak

    figures = soak(random_weights(tmp_path / "random.safetensors"), requests=60, minutes=3, clients=4,
                   every_s=1.0, say=lambda _: None)
    assert figures["requests"] == 60 and figures["unexpected"] == {} and figures["alive"]
    rss, fds, temporary = figures["final"]
    assert temporary == 0 and fds <= min(s[3] for s in figures["samples"]) + 4
    assert {"good", "cancelled", "wrong_token"} <= set(figures["statuses"])
