"""The pack's routes over real HTTP (issue 16): nothing outside the bank folder or the web folder is served —
not by traversal, encoded or double-encoded traversal, absolute paths, NUL bytes or symlinks."""

from __future__ import annotations

import http.client
import os
import shutil
import urllib.parse

import pytest

from ..live.models import BANK, BANKS

SECRET = "SLIDERSPACE-SECRET-MARKER"


def raw_get(server, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..`` or escapes)."""
    u = urllib.parse.urlparse(server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_host=False, skip_accept_encoding=True)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def planted(comfy_server, tmp_path_factory):
    """A secret text file and a real bank OUTSIDE the bank folder, each linked INTO it by a symlink."""
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.safetensors").write_text(SECRET * 10)
    shutil.copy(comfy_server.bank_dir / BANK, outside / "outside_bank.safetensors")
    links = {"link_to_secret.safetensors": outside / "secret.safetensors",
             "link_to_outside_bank.safetensors": outside / "outside_bank.safetensors"}
    sub = comfy_server.bank_dir / "linked_dir"
    for name, target in links.items():
        os.symlink(target, comfy_server.bank_dir / name)
    os.symlink(outside, sub, target_is_directory=True)
    yield outside, [*links, "linked_dir/outside_bank.safetensors", "linked_dir/secret.safetensors"]
    for name in links:
        os.remove(comfy_server.bank_dir / name)
    os.remove(sub)


NAMES = ["../../../../etc/passwd", "..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
         "%252e%252e%252fetc%252fpasswd", "/etc/passwd", "%2Fetc%2Fpasswd", "..\\..\\secret.safetensors",
         "%00", f"{BANK}%00.txt", "x" * 5000, "..", ".", "", "~/secret", "sliderspace/../" + BANK,
         "./" + BANK, "file:///etc/passwd", "C:%5CWindows%5Cwin.ini"]


@pytest.mark.parametrize("name", NAMES, ids=range(len(NAMES)))
def test_bank_info_serves_nothing_for_hostile_names(comfy_server, planted, name):
    status, body = raw_get(comfy_server, f"/sliderspace/bank_info?name={name}")
    assert status in (400, 404), (status, body[:300])
    assert SECRET.encode() not in body and b"root:" not in body


def test_symlinks_out_of_the_folder_are_neither_listed_nor_served(comfy_server, planted):
    outside, linked = planted
    status, body = comfy_server.get("/sliderspace/banks")
    assert status == 200
    assert set(BANKS) <= set(body["banks"]), body  # the real banks are still listed
    assert not set(linked) & set(body["banks"]), body["banks"]
    for name in linked:
        status, raw = raw_get(comfy_server, "/sliderspace/bank_info?name=" + urllib.parse.quote(name))
        assert status == 404, (name, status, raw[:300])
        assert SECRET.encode() not in raw and b"smile" not in raw
    status, info = comfy_server.get(f"/sliderspace/bank_info?name={BANK}")
    assert status == 200 and info["labels"][0] == "smile"  # the genuine bank is served


@pytest.mark.parametrize("path", [
    "/extensions/comfyui-sliderspace/../../../../etc/passwd",
    "/extensions/comfyui-sliderspace/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/extensions/comfyui-sliderspace/%2e%2e%2f__init__.py",
    "/extensions/comfyui-sliderspace/..%2f__init__.py",
    "/extensions/comfyui-sliderspace/%252e%252e%252f__init__.py",
    "/extensions/comfyui-sliderspace//etc/passwd",
    "/extensions/comfyui-sliderspace/..\\__init__.py",
])
def test_the_web_folder_serves_nothing_outside_it(comfy_server, path):
    status, body = raw_get(comfy_server, path)
    assert b"root:" not in body and b"comfy_entrypoint" not in body, (path, status, body[:200])
    assert status in (400, 403, 404), (path, status)


def test_the_web_folder_serves_the_widget(comfy_server):
    status, body = raw_get(comfy_server, "/extensions/comfyui-sliderspace/sliderspace.js")
    assert status == 200 and b"sliderspace" in body.lower()
