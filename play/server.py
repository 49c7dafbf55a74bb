"""`transcend play`: a local web page to play the model and see its move probabilities.

A standard-library threaded HTTP server: ``/`` and ``/static/...`` serve the page from the
``static`` folder beside this file (and nothing outside it), ``/api/...`` take and return JSON.
Every API answer is either the result or ``{"error": "one line"}`` with a 4xx/5xx status, so a
bad request never stops the server. See docs/play.md.
"""

from __future__ import annotations

import html
import ipaddress
import json
import os
import socket
import sys
import threading
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import click

from transcend.engine.model_file import ModelError, click_model, default_model_path, resolve_model
from transcend.engine.policy import Policy
from transcend.play.games import DEFAULT_NODES, TOP_MOVES, Games, PlayError, Stockfish

STATIC = Path(__file__).resolve().parent / "static"
# Request bodies: a PGN of a long game is tens of kilobytes; anything past this is refused.
MAX_BODY = 1 << 20
DRAIN_LIMIT = 64 << 20
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml",
    ".md": "text/plain; charset=utf-8", ".ico": "image/x-icon",
}
DEFAULT_PORT = 8765


def static_file(url_path: str) -> Path | None:
    """The file under STATIC that a URL path names, or None (missing, or outside STATIC)."""
    relative = unquote(url_path).lstrip("/")
    if relative in ("", "index.html"):
        relative = "index.html"
    elif relative.startswith("static/"):
        relative = relative[len("static/"):]
    else:
        return None
    if "\x00" in relative or "\\" in relative:
        return None
    path = (STATIC / relative).resolve()
    if not path.is_relative_to(STATIC) or not path.is_file():
        return None
    return path


class PlayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], games: Games) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.games = games
        host = address[0]
        # On a loopback address only the page's own host names are answered: a web site cannot
        # reach the server by pointing its own name at 127.0.0.1 (DNS rebinding).
        try:
            self.loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            self.loopback = False

    def handle_error(self, request: object, client_address: object) -> None:
        # A tab closed or reloaded mid-answer is normal; anything else is worth a line.
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            print(f"transcend play: request failed: {error!r}"[:300], file=sys.stderr)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: PlayServer
    server_version = "transcend-play"
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle's algorithm the second waits for the
    # client's delayed ACK, about 40 ms a request.
    disable_nagle_algorithm = True
    timeout = 120  # seconds a connection may sit idle or half-sent before it is dropped

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # one line per request would drown the address the user needs

    # -- answers -----------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: object) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _host_allowed(self) -> bool:
        if not self.server.loopback:
            return True
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
        return host in ("localhost", "127.0.0.1", "::1", str(self.server.server_address[0]))

    # -- routes ------------------------------------------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802 - the base class's naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        if not self._host_allowed():
            return self._error(HTTPStatus.FORBIDDEN, "unknown host name")
        url = urlsplit(self.path)
        if url.path.startswith("/api/"):
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            return self._api("GET", url.path[5:], query)
        path = static_file(url.path)
        if path is None:
            page = (f"<!doctype html><title>not found</title><p>No page at "
                    f"<code>{html.escape(url.path[:200])}</code>. "
                    f'<a href="/">Back to the board</a></p>\n')
            return self._send(HTTPStatus.NOT_FOUND, page.encode(), "text/html; charset=utf-8")
        kind = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        self._send(HTTPStatus.OK, path.read_bytes(), kind)

    def do_POST(self) -> None:  # noqa: N802
        if not self._host_allowed():
            return self._error(HTTPStatus.FORBIDDEN, "unknown host name")
        url = urlsplit(self.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return self._error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        if length > MAX_BODY:
            # Read and drop the body (a client that sends it all before reading would otherwise
            # see a broken pipe instead of this answer), unless it is absurdly large.
            self.close_connection = True
            remaining = length if length <= DRAIN_LIMIT else 0
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"upload too large ({length:,} bytes; the limit is "
                               f"{MAX_BODY >> 20} MiB)")
        raw = self.rfile.read(length)
        # JSON only: a form on another site cannot send it without the browser asking first.
        if "application/json" not in (self.headers.get("Content-Type") or ""):
            return self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON (application/json)")
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            return self._error(HTTPStatus.BAD_REQUEST, "the request is not valid JSON")
        if not isinstance(body, dict):
            return self._error(HTTPStatus.BAD_REQUEST, "the request must be a JSON object")
        if not url.path.startswith("/api/"):
            return self._error(HTTPStatus.NOT_FOUND, f"no such route: POST {url.path[:200]}")
        self._api("POST", url.path[5:], body)

    def _api(self, method: str, route: str, body: dict[str, Any]) -> None:
        handler = ROUTES.get((method, route))
        if handler is None:
            return self._error(HTTPStatus.NOT_FOUND, f"no such route: {method} /api/{route[:200]}")
        games = self.server.games
        try:
            if route in ("new", "info"):
                answer = handler(games, None, body)
            else:
                game = games.get(body.get("id"))
                with game.lock:
                    answer = handler(games, game, body)
        except PlayError as exc:
            return self._error(exc.status, str(exc))
        except Exception as exc:  # noqa: BLE001 - one failed request must not stop the server
            line = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"server error: {line}")
        if isinstance(answer, tuple):  # a download: (body, content type, file name)
            data, kind, name = answer
            return self._send(HTTPStatus.OK, data, kind,
                              {"Content-Disposition": f'attachment; filename="{name}"'})
        self._json(HTTPStatus.OK, answer)


def _info(games: Games, game: object, body: dict[str, Any]) -> dict[str, object]:
    return {"model": games.model_name, "stockfish": games.stockfish.available,
            "nodes": games.stockfish.nodes}


def _new(games: Games, game: object, body: dict[str, Any]) -> dict[str, object]:
    return games.state(games.new(body))


def _state(games: Games, game: Any, body: dict[str, Any]) -> dict[str, object]:
    return games.state(game)


def _move(games: Games, game: Any, body: dict[str, Any]) -> dict[str, object]:
    games.move(game, body.get("uci"))
    return games.state(game)


def _reply(games: Games, game: Any, body: dict[str, Any]) -> dict[str, object]:
    reply = games.reply(game)
    return {"reply": reply, **games.state(game)}


def _takeback(games: Games, game: Any, body: dict[str, Any]) -> dict[str, object]:
    games.takeback(game)
    return games.state(game)


def _goto(games: Games, game: Any, body: dict[str, Any]) -> dict[str, object]:
    games.goto(game, body.get("ply"))
    return games.state(game)


def _settings(games: Games, game: Any, body: dict[str, Any]) -> dict[str, object]:
    old_seed = game.settings.seed
    game.settings.update({k: v for k, v in body.items() if k != "id"})
    if game.settings.seed != old_seed:
        game.reseed()
    return games.state(game)


def _ply(game: Any, body: dict[str, Any]) -> int | None:
    if body.get("ply") is None:
        return None
    try:
        ply = int(body["ply"])
    except (TypeError, ValueError):
        raise PlayError(f"ply must be a whole number, not {body['ply']!r}") from None
    if not 0 <= ply <= len(game.moves):
        raise PlayError(f"ply must be from 0 to {len(game.moves)}")
    return ply


def _analysis(games: Games, game: Any, body: dict[str, Any]) -> dict[str, object]:
    try:
        top = int(body.get("top", TOP_MOVES))
    except (TypeError, ValueError):
        raise PlayError(f"top must be a whole number, not {body['top']!r}") from None
    return games.analysis(game, _ply(game, body), bool(body.get("stockfish", True)), top)


def _review(games: Games, game: Any, body: dict[str, Any]) -> dict[str, object]:
    return {"rows": games.review(game, bool(body.get("stockfish", True)))}


def _pgn(games: Games, game: Any, body: dict[str, Any]) -> tuple[bytes, str, str]:
    return games.pgn(game).encode(), "application/x-chess-pgn", f"transcend-{game.id[:8]}.pgn"


ROUTES = {
    ("GET", "info"): _info, ("POST", "new"): _new, ("GET", "state"): _state,
    ("POST", "state"): _state, ("POST", "move"): _move, ("POST", "reply"): _reply,
    ("POST", "takeback"): _takeback, ("POST", "goto"): _goto, ("POST", "settings"): _settings,
    ("POST", "analysis"): _analysis, ("POST", "review"): _review, ("GET", "pgn"): _pgn,
}


def make_server(model: Path | None = None, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                nodes: int = DEFAULT_NODES, threads: int = 0, device: str = "auto",
                stockfish_path: str | None = None) -> PlayServer:
    """The server with its model loaded (port 0: any free port); call ``serve_forever``."""
    path = resolve_model(model) if model else default_model_path()
    policy = Policy(path, device=device, threads=threads)
    games = Games(policy, path.name, Stockfish(nodes, stockfish_path))
    try:
        return PlayServer((host, port), games)
    except OSError as exc:
        games.stockfish.close()
        if exc.errno in (98, 48, 10048):  # address in use: Linux, macOS, Windows
            raise OSError(f"port {port} on {host} is in use: pass another with --port") from None
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def can_open_browser() -> bool:
    """Whether a graphical browser can open: on Linux and BSD only with a display, so that a
    text browser never takes over the terminal of a server without one."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def serve_in_thread(server: PlayServer) -> threading.Thread:
    """Run ``server`` on a daemon thread (tests and benchmarks); stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="play-server")
    thread.start()
    return thread


@click.command("play")
@click.option("--model", callback=click_model, metavar="MODEL",
              help="The .onnx model, or a bundled model's name (default: the bundled `default`).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but localhost lets other machines play.")
@click.option("--no-browser", is_flag=True, help="Do not open the page in a browser.")
@click.option("--nodes", type=click.IntRange(100, 10_000_000), default=DEFAULT_NODES,
              show_default=True, help="Stockfish nodes per position for win probabilities.")
@click.option("--threads", type=click.IntRange(0, 256), default=0,
              help="onnxruntime threads (0: its default).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Where the model runs.")
def play_command(model: Path | None, port: int, host: str, no_browser: bool, nodes: int,
                 threads: int, device: str) -> None:
    """Play the model in the browser and see its move probabilities at any temperature."""
    try:
        server = make_server(model, host, port, nodes, threads, device)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None
    games = server.games
    info = games.policy.info
    click.echo(f"model {info.path} on {info.provider}"
               + ("" if games.stockfish.available else
                  "; Stockfish not found, so no win probabilities or Stockfish opponent"))
    if not server.loopback:
        click.echo(f"listening on {host}: anyone who can reach this address can use the page")
    click.echo(f"transcend play: {server.url}  (Ctrl-C to stop)")
    sys.stdout.flush()
    if not no_browser:
        if can_open_browser():
            threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
        else:
            click.echo("no display to open a browser on: open the address above in one")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()
        games.stockfish.close()
