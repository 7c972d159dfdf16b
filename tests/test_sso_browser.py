"""Single sign-on in a real browser, up to the identity provider: the console (the Makefile's command, with an
[auth] secrets file) offers "Sign in with single sign-on", and clicking it sends the browser to the provider's
authorization endpoint with MedCore's client id, its callback and an OpenID scope. The provider here is a local
stand-in serving its discovery document: no identity provider is reachable from these machines."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from app_helpers import serve_console
from argon2 import PasswordHasher
from test_console_browser import CHROMIUM, CHROMIUM_ARGS

from medcore.access import users
from medcore.access.actor import local_admin
from medcore.access.sso import link_identity
from medcore.procs import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: run `make browser`"),
]
CLIENT_ID = "medcore-console"


class Provider(BaseHTTPRequestHandler):
    """An OIDC provider's discovery document, and an authorization endpoint that records what it was asked."""

    asked: list[dict] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        base = f"http://127.0.0.1:{self.server.server_port}"
        url = urlsplit(self.path)
        if url.path == "/.well-known/openid-configuration":
            body = json.dumps({
                "issuer": base, "authorization_endpoint": f"{base}/authorize", "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks", "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }).encode()  # fmt: skip
            content = "application/json"
        elif url.path == "/authorize":
            Provider.asked.append({k: v[0] for k, v in parse_qs(url.query).items()})
            body, content = b"<html><body><h1>Hospital sign-in</h1></body></html>", "text/html"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", content)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def provider():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    Provider.asked = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()


def test_sign_in_sends_the_browser_to_the_identity_provider(workspace, tmp_path, monkeypatch, provider):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("MEDCORE_USERS_FILE", str(tmp_path / "config" / "users.json"))
    monkeypatch.setattr(users, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    users.add_user(workspace, local_admin(), "ada", "admin", "correct horse battery")
    link_identity(workspace, local_admin(), "ada", "ada@hospital.org")
    port = free_port()
    callback = f"http://127.0.0.1:{port}/oauth2callback"
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        f'[auth]\nredirect_uri = "{callback}"\ncookie_secret = "{"x" * 48}"\nclient_id = "{CLIENT_ID}"\n'
        f'client_secret = "not a real secret"\n'
        f'server_metadata_url = "http://127.0.0.1:{provider}/.well-known/openid-configuration"\n'
    )
    with serve_console(port, workspace.root, tmp_path / "console.log", ("--secrets.files", str(secrets))) as url:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.set_default_timeout(30_000)
            hosts = set()
            page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname))
            page.goto(url)
            page.get_by_role("heading", name="Log in to MedCore").wait_for()
            page.get_by_role("button", name="Sign in with single sign-on").click()
            page.get_by_role("heading", name="Hospital sign-in").wait_for()
            browser.close()
    (asked,) = Provider.asked
    assert asked["client_id"] == CLIENT_ID and asked["redirect_uri"] == callback
    assert asked["response_type"] == "code" and "openid" in asked["scope"].split()
    assert asked["state"] and asked.get("nonce")  # a replayed or forged callback is refused by Streamlit
    assert hosts == {"127.0.0.1"}  # the console and the stand-in provider, nothing else
