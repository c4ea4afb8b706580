"""
Operator dashboard
==================

:class:`Dashboard` shows an operator what is happening: every running upload
with a live bar, speed and ETA, the uploads that ended within ``ttl`` (done
or failed, and why), the entry counts, the waiting clients and, when
mailboxes are served, their counts.  It is off by default; the middleware and
the server mount it at ``dashboard_url``, in front of the application, like
the probe:

``GET <dashboard_url>``
    The page (``static/dashboard.html``, with its scripts inlined and a
    Content-Security-Policy that allows only them); it polls the feed about
    once a second.

``GET <dashboard_url>/data``
    The feed: ``{"time", "counts", "running", "finished", "shown",
    "waiters", "mailboxes"}``; ``running`` and ``finished`` hold entries as
    the native probe shows them, newest first.

Both are protected like ``/mailbox/_stats``: ``Authorization: Bearer
<publish_token>``, or the ``authorize(environ, None, "stats")`` hook; anything
else is answered 403.  A browser sends no header when it opens a page, so the
page also takes the token as ``?token=``, and its script sends it on as the
header.

.. code-block:: python

    app = ProgressMiddleware(app, dashboard_url="/_dashboard",
                             publish_token=os.environ["PROGRESS_TOKEN"])
    # open /_dashboard?token=<PROGRESS_TOKEN>
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional

from ..query import query_params
from .responses import has_bearer_token, json_body, plain, respond

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ..progress.store import ProgressStore
    from .mailbox import Authorize, MailboxApp

log = logging.getLogger("wsgiprogress")

STATIC = os.path.join(os.path.dirname(os.path.dirname(__file__)), "static")
#: The feed's path below ``dashboard_url``.
FEED = "/data"
#: The query parameter that carries the token on the page's URL.
TOKEN_PARAM = "token"
_SCRIPT_TAG = re.compile(r'<script src="([a-z]+\.js)"></script>')
_END_TAG = re.compile(r"</(script)", re.IGNORECASE)
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


class Dashboard:
    """The operator dashboard of *table*, answered at *url* and *url*/data.

    :param table: the progress store whose entries it shows.
    :param mailbox_app: the mailbox endpoint, whose store and deliveries it
        counts; none when mailboxes are not served.
    :param authorize: ``authorize(environ, None, "stats") -> bool``, as for
        the mailbox stats.
    :param token: the bearer token (``publish_token``) that opens it.
    :param url: where the page is; the feed is below it.
    :param limit: the most entries the feed lists (:meth:`ProgressStore.recent`).

    The front doors build it from validated settings
    (:class:`~wsgiprogress.web.front.Front`), which refuse a dashboard that
    neither *token* nor *authorize* could open.
    """

    def __init__(self, table: ProgressStore, mailbox_app: Optional[MailboxApp] = None, *,
                 url: str, authorize: Optional[Authorize] = None,
                 token: Optional[str] = None, limit: int = 100) -> None:
        self.token = token
        self.url = url
        self.table = table
        self.mailbox_app = mailbox_app
        self.authorize = authorize
        self.feed_url = self.url.rstrip("/") + FEED
        self.limit = limit
        self.page, self.policy = render_page()

    def handles(self, path: str) -> bool:
        """True for the page's and the feed's paths."""
        return path == self.url or path == self.feed_url

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        head_only = method == "HEAD"
        if method not in ("GET", "HEAD"):
            return plain(start_response, "405 Method Not Allowed",
                         "the dashboard answers GET and HEAD", [("Allow", "GET, HEAD")])
        path = environ.get("PATH_INFO", "")
        if path == self.feed_url:
            if not self._allowed(environ, page=False):
                return plain(start_response, "403 Forbidden",
                             "the dashboard needs the bearer token", head_only=head_only)
            return self._feed(start_response, head_only)
        if path != self.url:
            return plain(start_response, "404 Not Found", "not a dashboard URL")
        if not self._allowed(environ, page=True):
            return plain(start_response, "403 Forbidden",
                         f"the dashboard needs the token: ?{TOKEN_PARAM}=<publish_token>",
                         head_only=head_only)
        return respond(start_response, "200 OK", "text/html; charset=utf-8", self.page, [
            ("Content-Security-Policy", self.policy),
            ("Referrer-Policy", "no-referrer"),
            ("X-Frame-Options", "DENY")], head_only)

    def data(self) -> Dict[str, Any]:
        """What the feed answers."""
        entries = self.table.recent(self.limit)
        running = [e.to_dict() for e in entries if e.running]
        finished = sorted((e.to_dict() for e in entries if not e.running),
                          key=lambda d: d["finished"] or 0.0, reverse=True)
        waiters = self.table.waiters
        answer: Dict[str, Any] = {
            "time": self.table.clock(),
            "counts": self.table.counts(),
            "running": running,
            "finished": finished,
            "shown": self.limit,
            "waiters": {"waiting": len(waiters), "limit": waiters.limit,
                        "refused": waiters.refused},
            "mailboxes": None,
        }
        if self.mailbox_app is not None:
            answer["mailboxes"] = dict(self.mailbox_app.store.stats(),
                                       delivered=self.mailbox_app.delivered)
        return answer

    def _feed(self, start_response: StartResponse, head_only: bool) -> List[bytes]:
        try:
            answer = self.data()
        except Exception:
            log.warning("dashboard: a store failed to answer", exc_info=True)
            return plain(start_response, "503 Service Unavailable",
                         "the progress store did not answer; retry shortly",
                         [("Retry-After", "2")], head_only)
        return json_body(start_response, "200 OK", answer, head_only=head_only)

    def _allowed(self, environ: WSGIEnvironment, page: bool) -> bool:
        token = self.token
        if has_bearer_token(environ, token):
            return True
        if token is not None and page and _same(_query_token(environ), token):
            return True
        return self.authorize is not None and bool(self.authorize(environ, None, "stats"))


def _query_token(environ: WSGIEnvironment) -> Optional[str]:
    try:
        return query_params(environ.get("QUERY_STRING", "")).get(TOKEN_PARAM)
    except ValueError:
        return None


def _same(given: Optional[str], token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def render_page() -> "tuple[bytes, str]":
    """``static/dashboard.html`` with the scripts it names inlined, and the
    Content-Security-Policy that allows exactly its inline scripts and styles
    (no other script can run, whatever the data holds)."""
    def read(name: str) -> str:
        with open(os.path.join(STATIC, name), encoding="utf-8") as file:
            return file.read()

    def inline(match: "re.Match[str]") -> str:
        # "</script" would end the element early (progress.js's usage comment
        # has one); "<\/" means the same in a JS comment, string or regex
        return "<script>" + _END_TAG.sub(r"<\\/\1", read(match.group(1))) + "</script>"

    html = _SCRIPT_TAG.sub(inline, read("dashboard.html"))
    hashes: Dict[str, List[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
        hashes[kind].append(f"'sha256-{digest}'")
    scripts = " ".join(hashes["script"]) or "'none'"
    styles = " ".join(hashes["style"]) or "'none'"
    policy = (f"default-src 'none'; script-src {scripts}; style-src {styles}; "
              "connect-src 'self'; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    return html.encode("utf-8"), policy
