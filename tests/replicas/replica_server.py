"""One server replica on a shared database, for the replica tests (the CLI's ``serve`` opens SQLite only).

Run: ``python tests/replicas/replica_server.py DB_URL PORT LEASE_S``.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from otel_lightning.collector.app import create_app
from otel_lightning.config import ServerSettings
from otel_lightning.store.open import open_store


def main() -> None:
    db, port, lease_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    logging.basicConfig(level=logging.WARNING)
    settings = ServerSettings.resolve(env={}, db=db, port=port, lease_s=lease_s, watchdog_interval_s=0.5)
    app = create_app(open_store(db, pool_size=8), settings, close_store=True)
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )


if __name__ == "__main__":
    main()
