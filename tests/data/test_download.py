import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from minigan.data.download import DataNotFoundError, data_root, fetch

BODY = bytes(range(256)) * 1000  # 256 kB, several read chunks would be needed below 1 MiB
SHA256 = hashlib.sha256(BODY).hexdigest()
MD5 = hashlib.md5(BODY).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves `server.routes[path] = (status, body, content_length)`; unknown paths are 404."""

    def do_GET(self):
        self.server.hits.append(self.path)
        status, body, length = self.server.routes.get(self.path, (404, b"", None))
        if status != 200:
            self.send_error(status)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.delenv("MINIGAN_OFFLINE", raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.hits = {}, []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.bin"


def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.delenv("MINIGAN_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".cache" / "minigan"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "xdg" / "minigan"
    monkeypatch.setenv("MINIGAN_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"


def test_download_then_cached(server, tmp_path):
    server.routes["/file.bin"] = (200, BODY, None)
    root = tmp_path / "cache"
    path = fetch("file.bin", [server.base + "/file.bin"], root, sha256=SHA256, md5=MD5,
                 progress=False)
    assert path == root / "file.bin"
    assert path.read_bytes() == BODY
    assert sorted(p.name for p in root.iterdir()) == ["file.bin"]
    again = fetch("file.bin", [server.base + "/file.bin"], root, sha256=SHA256, progress=False)
    assert again == path and server.hits == ["/file.bin"]  # the second call used the cache


def test_progress_bar_shows_the_file_name(server, tmp_path, capsys):
    server.routes["/file.bin"] = (200, BODY, None)
    fetch("file.bin", [server.base + "/file.bin"], tmp_path, progress=True)
    assert "file.bin" in capsys.readouterr().err


def test_found_in_extra_folder_without_network(server, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "file.bin").write_bytes(BODY)
    path = fetch("file.bin", [server.base + "/file.bin"], tmp_path / "cache", md5=MD5,
                 also_look_in=[tmp_path / "mine"])
    assert path == tmp_path / "mine" / "file.bin" and server.hits == []


def test_existing_file_with_wrong_checksum_is_reported(tmp_path):
    (tmp_path / "file.bin").write_bytes(b"something else")
    with pytest.raises(ValueError, match="md5 checksum mismatch") as info:
        fetch("file.bin", [], tmp_path, md5=MD5)
    assert str(tmp_path / "file.bin") in str(info.value)


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    server.routes["/file.bin"] = (200, BODY[:-1] + b"x", None)
    root = tmp_path / "cache"
    with pytest.raises(DataNotFoundError, match="sha256 checksum mismatch"):
        fetch("file.bin", [server.base + "/file.bin"], root, sha256=SHA256, progress=False)
    assert list(root.iterdir()) == []  # neither the file nor a temp file


def test_server_errors_fall_through_to_next_mirror(server, tmp_path):
    server.routes["/a/file.bin"] = (500, b"", None)
    server.routes["/c/file.bin"] = (200, BODY, None)
    urls = [server.base + p for p in ("/a/file.bin", "/b/file.bin", "/c/file.bin")]
    path = fetch("file.bin", urls, tmp_path, md5=MD5, progress=False)
    assert path.read_bytes() == BODY
    assert server.hits == ["/a/file.bin", "/b/file.bin", "/c/file.bin"]


def test_truncated_transfer_leaves_nothing(server, tmp_path):
    server.routes["/file.bin"] = (200, BODY, len(BODY) + 1000)  # promises more than it sends
    root = tmp_path / "cache"
    with pytest.raises(DataNotFoundError, match="truncated transfer") as info:
        fetch("file.bin", [server.base + "/file.bin"], root, progress=False)
    assert f"got {len(BODY)} of {len(BODY) + 1000} bytes" in str(info.value)
    assert list(root.iterdir()) == []


def test_truncated_then_good_mirror(server, tmp_path):
    server.routes["/bad/file.bin"] = (200, BODY[:1000], len(BODY))
    server.routes["/good/file.bin"] = (200, BODY, None)
    urls = [server.base + "/bad/file.bin", server.base + "/good/file.bin"]
    path = fetch("file.bin", urls, tmp_path, progress=False)
    assert path.read_bytes() == BODY
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_all_mirrors_fail_says_why_and_what_to_do(server, tmp_path):
    dead = _closed_port_url()
    urls = [dead, server.base + "/missing.bin"]
    with pytest.raises(DataNotFoundError) as info:
        fetch("file.bin", urls, tmp_path / "cache", progress=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str((tmp_path / "cache" / "file.bin").absolute()) in message
    assert f"{dead}: cannot connect" in message
    assert f"{server.base}/missing.bin: HTTP 404" in message
    assert "MINIGAN_DATA" in message and "root=" in message


def test_validator_rejects_download(server, tmp_path):
    server.routes["/file.bin"] = (200, BODY, None)

    def reject(path: Path) -> None:
        assert path.read_bytes() == BODY and path.parent == tmp_path
        raise ValueError("not the expected format")

    with pytest.raises(DataNotFoundError, match="not the expected format"):
        fetch("file.bin", [server.base + "/file.bin"], tmp_path, validate=reject,
              progress=False)
    assert list(tmp_path.iterdir()) == []


def test_offline_fails_at_once(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGAN_OFFLINE", "1")
    server.routes["/file.bin"] = (200, BODY, None)
    urls = [server.base + "/file.bin", "https://example.org/file.bin"]
    with pytest.raises(DataNotFoundError) as info:
        fetch("file.bin", urls, tmp_path / "cache")
    message = str(info.value)
    assert str((tmp_path / "cache" / "file.bin").absolute()) in message
    assert all(url in message for url in urls)
    assert "MINIGAN_OFFLINE" in message and "MINIGAN_DATA" in message
    assert server.hits == [] and not (tmp_path / "cache").exists()


def test_download_false_does_not_touch_network(server, tmp_path):
    with pytest.raises(DataNotFoundError, match="download=False"):
        fetch("file.bin", [server.base + "/file.bin"], tmp_path, download=False)
    assert server.hits == []
