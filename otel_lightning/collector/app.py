"""The server: ``create_app(store, settings)`` assembles the Starlette app from the route lists.

``app.state`` holds the store, the settings, the ingest queue and the long-poll notifier; the lifespan
starts the ingest writer, the lease watchdog and the forwarding of the store's change feed (other replicas'
writes) to the notifier, and stops them (after writing what is queued) on shutdown.
Running it is the CLI's job (``otel-lightning serve``) or ``serve()``'s (in-process, background thread).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware

from otel_lightning.collector import api_routes, openapi, otlp_routes, views
from otel_lightning.collector.auth import BearerAuth
from otel_lightning.collector.ingest import IngestQueue
from otel_lightning.collector.notify import Notifier, forward_changes
from otel_lightning.collector.problems import EXCEPTION_HANDLERS
from otel_lightning.collector.watchdog import Watchdog
from otel_lightning.config import ServerSettings
from otel_lightning.store.base import Store

logger = logging.getLogger(__name__)


def create_app(
    store: Store, settings: ServerSettings | None = None, *, close_store: bool = False
) -> Starlette:
    """The otel-lightning server as an ASGI app over ``store``.

    Args:
        store: where everything is kept; the app does not own it unless ``close_store`` is set.
        settings: server settings; resolved from the environment when omitted.
        close_store: close the store when the app shuts down.
    """
    settings = settings or ServerSettings.resolve()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ingest: IngestQueue = app.state.ingest
        ingest.start()
        watchdog = Watchdog(store, app.state.notifier, settings.watchdog_interval_s)
        watchdog.start()
        app.state.watchdog = watchdog
        stop_changes = forward_changes(store, app.state.notifier)  # other replicas' writes wake long-polls
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(stop_changes)  # joins the feed's thread
            await watchdog.stop()
            ingest.stop()
            if close_store:
                store.close()

    middleware = [Middleware(GZipMiddleware, minimum_size=64 * 1024)]
    if settings.api_token:
        middleware.insert(0, Middleware(BearerAuth, token=settings.api_token))
    app = Starlette(
        routes=[*otlp_routes.ROUTES, *api_routes.ROUTES, *views.ROUTES, *openapi.ROUTES],
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.settings = settings
    app.state.notifier = Notifier()
    app.state.ingest = IngestQueue(store, max_pending=settings.ingest_queue_spans)
    return app
