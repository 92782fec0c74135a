"""A web dashboard for an app's queues, jobs and dead letters, read from the queues themselves.

    import cloudqueue.dashboard

    asgi = cloudqueue.dashboard.app(app)                  # mount in FastAPI / Starlette
    wsgi = cloudqueue.dashboard.wsgi_app(app)             # mount in Flask / Django
    cloudqueue.dashboard.serve(app, port=8000)            # or: cloudqueue dashboard myproject.jobs:app

Needs the extra: ``pip install "cloudqueue[dashboard]"`` (Starlette, Jinja2, uvicorn).
``import cloudqueue`` never imports this package.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ._health import queues_of
from ._security import check_bind, is_loopback, parse_basic_auth

if TYPE_CHECKING:
    from ..app import App

__all__ = ["app", "check_bind", "is_loopback", "parse_basic_auth", "queues_of", "serve", "wsgi_app"]

_HINT = 'the dashboard needs its extra: pip install "cloudqueue[dashboard]"'


def app(application: App, *, read_only: bool = False, token: str | None = None,
        basic_auth: tuple[str, str] | str | None = None, secret: str | bytes | None = None,
        refresh: timedelta = timedelta(seconds=2), title: str | None = None) -> Any:
    """The dashboard of ``application`` as an ASGI application (a Starlette app).

    Args:
        read_only: hide redrive, purge and enqueue, and refuse their POSTs.
        token: ask for this token (``Authorization: Bearer``, a ``?token=`` link once, or the
            login form; at least 8 characters).
        basic_auth: ask for this (user, password), or "user:password", with HTTP basic auth instead.
        secret: the key CSRF tokens and session cookies are signed with; give every process
            serving one dashboard the same one (default: ``$CLOUDQUEUE_DASHBOARD_SECRET``,
            else random per process).
        refresh: how often the live view polls the health figures (at least 0.5 s).
        title: the page title (default: the app's name).

    Raises:
        ConfigurationError: a token shorter than 8 characters, a token and basic auth both, a
            malformed basic auth or refresh.
        ImportError: the ``dashboard`` extra is not installed.
    """
    try:
        from ._web import build
    except ImportError as exc:
        raise ImportError(f"{_HINT} ({exc})") from exc
    return build(application, read_only=read_only, token=token, basic_auth=basic_auth, secret=secret,
                 refresh=refresh, title=title)


def wsgi_app(application: App, **options: Any) -> Any:
    """The dashboard as a WSGI application (through ``a2wsgi``), for Flask or Django.

    Takes the same options as ``app``.
    """
    try:
        from a2wsgi import ASGIMiddleware
    except ImportError as exc:
        raise ImportError(f"{_HINT} ({exc})") from exc
    return ASGIMiddleware(app(application, **options))


def serve(application: App, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          **options: Any) -> None:
    """Serve the dashboard with uvicorn until interrupted (takes the options of ``app``).

    Raises:
        ConfigurationError: ``host`` is not loopback and neither ``token`` nor ``basic_auth`` is set.
    """
    basic = options.get("basic_auth")
    if isinstance(basic, str):
        options["basic_auth"] = basic = parse_basic_auth(basic)
    check_bind(host, token=options.get("token"), basic_auth=basic)
    asgi = app(application, **options)
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError(f"{_HINT} ({exc})") from exc
    uvicorn.run(asgi, host=host, port=port, log_level=log_level)
