"""The Starlette application: routes, auth and CSRF checks, rendering."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import CloudQueueError, ConfigurationError, PayloadError, QueueNotFound, UnsupportedFeature
from ..backends.base import Backend
from ..lifecycle import ReasonKind
from ._flows import RETRYABLE, STATUSES, flow_time, read_flow, read_flows, result_text, retry_flow
from ._forms import field_errors, form_fields, job_schema, read_form
from ._health import (
    CHART_HEIGHT,
    CHART_LINES,
    CHART_WIDTH,
    FIGURES,
    LABELS,
    Monitor,
    age_text,
    oldest_text,
    queues_of,
    time_text,
    view_letter,
)
from ._security import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE, Auth, Csrf, parse_basic_auth

if TYPE_CHECKING:
    from ..app import App
    from ..job import Job

HERE = Path(__file__).parent
#: how many dead letters a page lists (and looks through for one id)
LETTER_LIMIT = 100
_SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


@dataclass
class _Posted:
    """A form that passed the checks: its fields (first value of each), and the ticked ids."""

    values: dict[str, str]
    ids: list[str]


class Settings:
    """What one dashboard instance was built with."""

    def __init__(self, app: App, *, read_only: bool, auth: Auth, secret: bytes, refresh: timedelta,
                 title: str | None) -> None:
        self.app = app
        self.read_only = read_only
        self.auth = auth
        self.secret = secret
        self.csrf = Csrf(secret)
        self.refresh = refresh
        self.title = title or f"{app.name} · cloudqueue"
        self.monitor = Monitor(app)


def build(app: App, *, read_only: bool = False, token: str | None = None,
          basic_auth: tuple[str, str] | str | None = None, secret: str | bytes | None = None,
          refresh: timedelta = timedelta(seconds=2), title: str | None = None) -> Starlette:
    """The dashboard as a Starlette (ASGI) application; see ``cloudqueue.dashboard.app``."""
    if not isinstance(refresh, timedelta) or refresh < timedelta(seconds=0.5):
        raise ConfigurationError(f"dashboard refresh must be a timedelta of at least 0.5 s, got {refresh!r}; "
                                 "write e.g. refresh=timedelta(seconds=2)")
    if isinstance(basic_auth, str):
        basic_auth = parse_basic_auth(basic_auth)
    elif basic_auth is not None and not (isinstance(basic_auth, tuple) and len(basic_auth) == 2
                                         and all(isinstance(part, str) and part for part in basic_auth)):
        raise ConfigurationError("dashboard basic_auth must be (user, password) or 'user:password', "
                                 "both non-empty")
    if isinstance(secret, str):
        secret = secret.encode()
    secret = secret or os.environ.get("CLOUDQUEUE_DASHBOARD_SECRET", "").encode() or secrets.token_bytes(32)
    settings = Settings(app, read_only=read_only, auth=Auth(token=token, basic=basic_auth), secret=secret,
                        refresh=refresh, title=title)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(FIGURES=FIGURES, LABELS=LABELS, CHART_LINES=CHART_LINES, CHART_WIDTH=CHART_WIDTH,
                       CHART_HEIGHT=CHART_HEIGHT, age_text=age_text, oldest_text=oldest_text, time_text=time_text,
                       settings=settings, CSRF_FIELD=CSRF_FIELD, FLOW_STATUSES=STATUSES, RETRYABLE=RETRYABLE,
                       flow_time=flow_time, result_text=result_text)
    views = _Views(settings, env)
    routes = [
        Route("/", views.overview, name="overview"),
        Route("/api/health", views.api_health, name="api_health"),
        Route("/jobs", views.jobs, name="jobs"),
        Route("/jobs/{job}", views.job, name="job"),
        Route("/jobs/{job}/enqueue", views.enqueue, methods=["POST"], name="enqueue"),
        Route("/queues/{queue}/dead-letters", views.dead_letters, name="dead_letters"),
        Route("/queues/{queue}/dead-letters/redrive", views.redrive, methods=["POST"], name="redrive"),
        Route("/queues/{queue}/dead-letters/purge", views.purge, methods=["GET", "POST"], name="purge"),
        Route("/queues/{queue}/dead-letters/{message_id:path}", views.dead_letter, name="dead_letter"),
        Route("/flows", views.flows, name="flows"),
        Route("/flows/{flow_id}", views.flow, name="flow"),
        Route("/flows/{flow_id}/retry", views.retry_flow, methods=["POST"], name="retry_flow"),
        Route("/login", views.login, methods=["GET", "POST"], name="login"),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    dashboard = Starlette(routes=routes, exception_handlers={404: views.not_found, 405: views.not_allowed})
    dashboard.add_middleware(_Guard, settings=settings)
    return dashboard


class _Guard:
    """Auth on every request and security headers on every answer (each POST view checks
    read-only mode and the CSRF token itself, through ``_Views.checked_form``)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        static = scope["path"].removeprefix(scope.get("root_path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in _SECURITY_HEADERS.items():
                    if static and name == "cache-control":
                        continue  # the script and the style sheet may be cached (they carry an ETag)
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        request = Request(scope, receive)
        refused = self._refusal(request)
        if refused is not None:
            await refused(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, request: Request) -> Response | None:
        settings = self.settings
        auth = settings.auth
        path = request.url.path.removeprefix(request.scope.get("root_path", "")) or "/"
        if path.startswith("/static/") or (path == "/login" and auth.token is not None):
            return None
        if auth.token is not None and request.method == "GET":
            given = request.query_params.get("token")
            if given is not None and auth.token_matches(given):
                # a link with ?token=: keep it in a cookie and drop it from the address bar
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
                response = RedirectResponse(target, status_code=303)
                _set_cookie(response, request, SESSION_COOKIE, auth.session_value(settings.secret))
                return response
        if not auth.allows(request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE),
                           settings.secret):
            if auth.basic is not None:
                return Response("authentication required\n", status_code=401,
                                headers={"www-authenticate": 'Basic realm="cloudqueue dashboard", charset="UTF-8"'})
            if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                login = (request.scope.get("root_path") or "") + "/login"
                return RedirectResponse(f"{login}?{urlencode({'next': str(request.url.path)})}", status_code=303)
            return JSONResponse({"error": "authentication required: send Authorization: Bearer TOKEN"},
                                status_code=401)
        return None


def _set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        path=request.scope.get("root_path") or "/")


class _Views:
    def __init__(self, settings: Settings, env: Environment) -> None:
        self.settings = settings
        self.env = env

    # -- plumbing ----------------------------------------------------------------------
    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        nonce = request.cookies.get(CSRF_COOKIE) or ""
        fresh = not nonce or len(nonce) > 64
        if fresh:
            nonce = self.settings.csrf.new_nonce()

        def url(name: str, /, **params: Any) -> str:
            return str(request.url_for(name, **params).path)

        html = self.env.get_template(template).render(
            request=request, url=url, csrf_token=self.settings.csrf.token(nonce), **context)
        response = HTMLResponse(html, status_code=status)
        if fresh:
            _set_cookie(response, request, CSRF_COOKIE, nonce)
        return response

    def error(self, request: Request, status: int, title: str, message: str) -> HTMLResponse:
        return self.render(request, "error.html", status=status, title=title, message=message)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self.error(request, 404, "Not found", getattr(exc, "detail", "") or "no such page")

    async def not_allowed(self, request: Request, exc: Exception) -> Response:
        return self.error(request, 405, "Method not allowed", f"{request.method} is not accepted here")

    async def checked_form(self, request: Request) -> _Posted | Response:
        """The POSTed form, or the refusal when it is read-only or fails the CSRF check."""
        if self.settings.read_only:
            return self.error(request, 403, "Read-only",
                              "this dashboard is read-only: redrive, purge, enqueue and retry are turned off")
        form = await request.form()
        posted = _Posted({}, [])
        for key, value in form.multi_items():
            if isinstance(value, str):  # an uploaded file is nothing any form here sends
                posted.values.setdefault(key, value)
                if key == "ids":
                    posted.ids.append(value)
        why = self.settings.csrf.check(request.cookies.get(CSRF_COOKIE), posted.values.get(CSRF_FIELD),
                                       request.headers.get("origin"), request.headers.get("host"))
        if why is not None:
            return self.error(request, 403, "Refused", why)
        return posted

    def queue(self, name: str) -> Backend | None:
        return dict(queues_of(self.settings.app)).get(name)

    def job_of(self, name: str) -> Job[Any, Any] | None:
        return self.settings.app.jobs.get(name)

    # -- pages -------------------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        health = await run_in_threadpool(self.settings.monitor.read)
        jobs = sorted(self.settings.app.jobs.values(), key=lambda j: j.name)
        return self.render(request, "overview.html", health=health, jobs=jobs, notice=_notice(request))

    async def api_health(self, request: Request) -> Response:
        health = await run_in_threadpool(self.settings.monitor.read)
        return JSONResponse({"queues": [h.as_json() for h in health]})

    async def jobs(self, request: Request) -> Response:
        jobs = sorted(self.settings.app.jobs.values(), key=lambda j: j.name)
        details = [_job_details(job, self.settings.app) for job in jobs]
        return self.render(request, "jobs.html", jobs=details)

    async def job(self, request: Request) -> Response:
        job = self.job_of(request.path_params["job"])
        if job is None:
            return self.error(request, 404, "Unknown job", f"this app has no job named {request.path_params['job']!r}")
        return self.render(request, "job.html", job=_job_details(job, self.settings.app), fields=form_fields(job),
                           errors={}, form_errors=[], options={}, notice=_notice(request))

    async def enqueue(self, request: Request) -> Response:
        job = self.job_of(request.path_params["job"])
        if job is None:
            return self.error(request, 404, "Unknown job", f"this app has no job named {request.path_params['job']!r}")
        form = await self.checked_form(request)
        if isinstance(form, Response):
            return form
        fields = form_fields(job)
        payload, errors = read_form(fields, form.values)
        options = {k: form.values.get(k, "").strip() for k in ("delay", "idempotency_key", "ordering_key")}
        form_errors: list[str] = []
        delay: timedelta | None = None
        if options["delay"]:
            try:
                seconds = float(options["delay"])
                if seconds < 0:
                    raise ValueError("negative")
                delay = timedelta(seconds=seconds) if seconds else None
            except ValueError:
                errors["delay"] = "a number of seconds, 0 or more"
        try:
            job.validate(payload)  # every field's error at once, those that did not parse included
        except PayloadError as exc:
            placed, loose = field_errors(fields, exc.errors)
            for name, message in placed.items():
                errors.setdefault(name, message)
            form_errors.extend(loose or ([] if placed else [str(exc)]))
        if not errors and not form_errors:
            try:
                job_id = await run_in_threadpool(
                    job.enqueue, payload, delay=delay, idempotency_key=options["idempotency_key"] or None,
                    ordering_key=options["ordering_key"] or None)
            except CloudQueueError as exc:  # too large, an option the queue cannot honour, unreachable
                form_errors.append(f"not enqueued: {exc}")
            else:
                self.settings.monitor.invalidate()
                target = request.url_for("job", job=job.name).path
                return RedirectResponse(f"{target}?{urlencode({'enqueued': job_id})}", status_code=303)
        return self.render(request, "job.html", status=422, job=_job_details(job, self.settings.app),
                           fields=fields, errors=errors, form_errors=form_errors, options=options, notice=None)

    async def dead_letters(self, request: Request) -> Response:
        name = request.path_params["queue"]
        backend = self.queue(name)
        if backend is None:
            return self.error(request, 404, "Unknown queue", f"this app has no queue named {name!r}")
        letters, problem = await run_in_threadpool(_list_letters, backend)
        return self.render(request, "dead_letters.html", queue=name, letters=letters, problem=problem,
                           limit=LETTER_LIMIT, notice=_notice(request))

    async def dead_letter(self, request: Request) -> Response:
        name, message_id = request.path_params["queue"], request.path_params["message_id"]
        backend = self.queue(name)
        if backend is None:
            return self.error(request, 404, "Unknown queue", f"this app has no queue named {name!r}")
        letters, problem = await run_in_threadpool(_list_letters, backend)
        if problem is not None:
            return self.error(request, 502, "Cannot read dead letters", problem)
        found = next((letter for letter in letters if letter.message_id == message_id), None)
        if found is None:
            return self.error(request, 404, "No such dead letter",
                              f"no dead letter {message_id!r} among the first {LETTER_LIMIT} of queue {name!r} "
                              "(it may have been redriven or purged)")
        return self.render(request, "dead_letter.html", queue=name, letter=found)

    async def redrive(self, request: Request) -> Response:
        name = request.path_params["queue"]
        backend = self.queue(name)
        if backend is None:
            return self.error(request, 404, "Unknown queue", f"this app has no queue named {name!r}")
        form = await self.checked_form(request)
        if isinstance(form, Response):
            return form
        everything = form.values.get("all") == "1"
        if not everything and not form.ids:
            return self.error(request, 400, "Nothing chosen",
                              "tick the dead letters to redrive, or use Redrive all")
        try:
            count = await run_in_threadpool(backend.redrive, None if everything else form.ids)
        except QueueNotFound as exc:
            return self.error(request, 404, "Not redriven", str(exc))
        except CloudQueueError as exc:
            return self.error(request, 502, "Not redriven", f"{type(exc).__name__}: {exc}")
        self.settings.monitor.invalidate()
        target = request.url_for("dead_letters", queue=name).path
        return RedirectResponse(f"{target}?{urlencode({'redriven': count})}", status_code=303)

    async def purge(self, request: Request) -> Response:
        name = request.path_params["queue"]
        backend = self.queue(name)
        if backend is None:
            return self.error(request, 404, "Unknown queue", f"this app has no queue named {name!r}")
        if request.method == "GET":
            if self.settings.read_only:
                return self.error(request, 403, "Read-only", "this dashboard is read-only: purge is turned off")
            health = await run_in_threadpool(self.settings.monitor.read_one, name, backend)
            return self.render(request, "purge.html", queue=name, health=health)
        form = await self.checked_form(request)
        if isinstance(form, Response):
            return form
        if form.values.get("confirm") != name:
            return self.error(request, 400, "Not purged",
                              f"type the queue's name ({name}) in the confirmation box to purge its dead letters")
        try:
            count = await run_in_threadpool(backend.purge_dead_letters)
        except CloudQueueError as exc:
            return self.error(request, 502, "Not purged", f"{type(exc).__name__}: {exc}")
        self.settings.monitor.invalidate()
        target = request.url_for("dead_letters", queue=name).path
        return RedirectResponse(f"{target}?{urlencode({'purged': count})}", status_code=303)

    async def flows(self, request: Request) -> Response:
        status = request.query_params.get("status") or None
        if status is not None and status not in STATUSES:
            return self.error(request, 400, "Unknown status",
                              f"no flow status {status!r}; the statuses are {', '.join(STATUSES)}")
        listed = await run_in_threadpool(read_flows, self.settings.app, status)
        return self.render(request, "flows.html", listed=listed, chosen=status)

    async def flow(self, request: Request) -> Response:
        flow_id = request.path_params["flow_id"]
        found = await run_in_threadpool(read_flow, self.settings.app, flow_id)
        if isinstance(found, tuple):
            status, title, message = found
            return self.error(request, status, title, message)
        return self.render(request, "flow.html", flow=found, notice=_notice(request))

    async def retry_flow(self, request: Request) -> Response:
        flow_id = request.path_params["flow_id"]
        form = await self.checked_form(request)
        if isinstance(form, Response):
            return form
        done = await run_in_threadpool(retry_flow, self.settings.app, flow_id)
        if isinstance(done, tuple):
            status, title, message = done
            return self.error(request, status, title, message)
        self.settings.monitor.invalidate()
        target = request.url_for("flow", flow_id=flow_id).path
        sent = len(done.redriven) + len(done.resent)
        return RedirectResponse(f"{target}?{urlencode({'retried': sent, 'missing': len(done.missing)})}",
                                status_code=303)

    async def login(self, request: Request) -> Response:
        auth = self.settings.auth
        next_path = request.query_params.get("next", "")
        if not next_path.startswith("/") or next_path.startswith("//"):
            next_path = request.url_for("overview").path  # never a redirect to another site
        if auth.token is None:
            return RedirectResponse(next_path, status_code=303)
        if request.method == "GET":
            return self.render(request, "login.html", next=next_path, problem=None)
        form = await request.form()
        values = {key: value for key, value in form.multi_items() if isinstance(value, str)}
        why = self.settings.csrf.check(request.cookies.get(CSRF_COOKIE), values.get(CSRF_FIELD),
                                       request.headers.get("origin"), request.headers.get("host"))
        if why is not None:
            return self.render(request, "login.html", status=403, next=next_path, problem=why)
        if not auth.token_matches(values.get("token", "")):
            return self.render(request, "login.html", status=401, next=next_path, problem="wrong token")
        response = RedirectResponse(next_path, status_code=303)
        _set_cookie(response, request, SESSION_COOKIE, auth.session_value(self.settings.secret))
        return response


def _notice(request: Request) -> str | None:
    """The line shown after a POST redirected here (built from numbers and ids only)."""
    params = request.query_params
    if "redriven" in params and params["redriven"].isdigit():
        return f"Redrove {params['redriven']} message(s): they are back on the queue."
    if "purged" in params and params["purged"].lstrip("-").isdigit():
        count = int(params["purged"])
        return "Purged the dead letters." if count < 0 else f"Purged {count} dead letter(s)."
    if "retried" in params and params["retried"].isdigit():
        missing = params.get("missing", "0")
        lost = (f" {missing} failed job(s) were not in dead letters (purged or lapsed) and cannot be."
                if missing.isdigit() and int(missing) else "")
        return f"Sent {params['retried']} job(s) of the flow again.{lost}"
    if "enqueued" in params:
        return f"Enqueued job {params['enqueued']}."
    return None


def _list_letters(backend: Backend) -> tuple[list[Any], str | None]:
    try:
        return [view_letter(letter) for letter in backend.dead_letters(limit=LETTER_LIMIT)], None
    except UnsupportedFeature as exc:
        return [], str(exc)
    except CloudQueueError as exc:
        return [], f"{type(exc).__name__}: {exc}"


def _job_details(job: Job[Any, Any], app: App) -> dict[str, Any]:
    """What the jobs page says about one job: schema, retry policy, delay and ordering."""
    retry = job.retry
    backoff = retry.backoff
    if backoff.factor == 1 and not backoff.jitter:
        waits = f"fixed {age_text(backoff.initial)}"
    else:
        waits = (f"exponential from {age_text(backoff.initial)}, x{backoff.factor:g}, up to "
                 f"{age_text(backoff.maximum)}{', with jitter' if backoff.jitter else ''}")
    ordering = job.ordering_key
    if ordering is None:
        ordering_text = "none (any order)"
    elif isinstance(ordering, str):
        ordering_text = f"FIFO group {ordering!r}"
    else:
        ordering_text = f"FIFO group from {getattr(ordering, '__name__', 'a function')}(payload)"
    delay_text = "unknown"
    try:
        caps = app.queue(job.queue).capabilities
        if caps.max_delay is None:
            delay_text = "any delay"
        elif not caps.max_delay:
            delay_text = "no delays on this queue" + (" (longer delays hop)" if caps.delay_hops else "")
        else:
            delay_text = f"up to {age_text(caps.max_delay)} per send" + (
                ", longer delays hop" if caps.delay_hops else "")
    except CloudQueueError as exc:
        delay_text = f"unknown ({exc})"
    model = job.payload_type
    return {
        "name": job.name,
        "doc": (job.__doc__ or "").strip().split("\n\n")[0],
        "model": getattr(model, "__name__", repr(model)),
        "schema": json.dumps(job_schema(job), indent=2),
        "attempts": retry.attempts,
        "backoff": waits,
        "ordering": ordering_text,
        "delay": delay_text,
        "queue": "default",
        "kinds": [k.value for k in ReasonKind],
    }

