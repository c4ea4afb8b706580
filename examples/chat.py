"""
Chat demo: rooms on a mailbox, pushed to browsers by server-sent events.

Run it on our waitress server::

    wsgiprogress-serve --listen 127.0.0.1:8080 examples.chat:app

or on werkzeug's threaded dev server::

    python3 examples/chat.py [host] [port]

then open http://127.0.0.1:8080/ in two browser windows with the same room
link.  ``GET /`` makes a room (a random 128-bit name, so only people given the
link can read it) and redirects to it; the page reads the room's mailbox with
an ``EventSource`` on ``/mailbox/<room>?transport=sse`` (the browser resumes
with ``Last-Event-ID`` after a drop, and a ``gap`` event says when messages
were missed); ``POST /say?room=<room>`` posts a line to the room.
"""
from __future__ import annotations

import json
import os
import secrets
import sys
from typing import Any, Dict, Iterable
from urllib.parse import parse_qs

from wsgiprogress import ProgressMiddleware, is_valid_id
from wsgiprogress.mailbox import MailboxStore, MemoryMailboxes

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(HERE, "chat.html")
MAX_NAME = 40
MAX_TEXT = 500
#: The store when the server provides none (``environ["wsgiprogress.mailbox"]``).
MAILBOX = MemoryMailboxes(max_messages=200)


def _answer(start_response: Any, status: str, text: str,
            headers: Iterable[Any] = ()) -> Iterable[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body))), *headers])
    return [body]


def _page(start_response: Any) -> Iterable[bytes]:
    with open(PAGE, "rb") as f:
        body = f.read()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _say(environ: Dict[str, Any], start_response: Any, room: str) -> Iterable[bytes]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _answer(start_response, "400 Bad Request", "invalid Content-Length")
    if length < 0:
        return _answer(start_response, "400 Bad Request", "invalid Content-Length")
    if length > 4 * (MAX_NAME + MAX_TEXT) + 100:
        return _answer(start_response, "413 Payload Too Large", "message too long")
    form = parse_qs(environ["wsgi.input"].read(length).decode("utf-8", "replace"))
    name = (form.get("name") or ["anonymous"])[0].strip()[:MAX_NAME] or "anonymous"
    text = (form.get("text") or [""])[0].strip()
    if not text:
        return _answer(start_response, "400 Bad Request", "say something")
    if len(text) > MAX_TEXT:
        return _answer(start_response, "413 Payload Too Large",
                       f"at most {MAX_TEXT} characters")
    store: MailboxStore = environ.get("wsgiprogress.mailbox", MAILBOX)
    ids = store.post(room, json.dumps({"name": name, "text": text}))
    return _answer(start_response, "201 Created", str(ids[room]))


def chat(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The page, a new room at ``/``, and ``POST /say?room=…``."""
    path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
    room = (parse_qs(environ.get("QUERY_STRING", "")).get("room") or [""])[0]
    if path == "/" and method in ("GET", "HEAD"):
        if not room:
            return _answer(start_response, "303 See Other", "to a new room",
                           [("Location", f"/?room={secrets.token_hex(16)}")])
        return _page(start_response)
    if path == "/say" and method == "POST":
        if not (is_valid_id(room) and len(room) >= 32):
            return _answer(start_response, "400 Bad Request", "invalid room")
        return _say(environ, start_response, room)
    return _answer(start_response, "404 Not Found", "not found")


app = ProgressMiddleware(chat, mailbox=MAILBOX)


def main(argv: Iterable[str] = ()) -> None:
    from werkzeug.serving import run_simple

    args = list(argv)
    host = args[0] if args else "127.0.0.1"
    port = int(args[1]) if len(args) > 1 else 8080
    print(f"chat on http://{host}:{port}/")
    run_simple(host, port, app, threaded=True)


if __name__ == "__main__":
    main(sys.argv[1:])
