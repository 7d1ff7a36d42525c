"""`deepwatch serve`: the investigators' web console and JSON API (console.app) under uvicorn."""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Optional

import typer

from orchestrator.cli import BlobsOpt, DbOpt, _blobs, _db, _fail, app, console


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)"),
    port: int = typer.Option(8080, "--port", min=1, max=65535),
    db: Optional[str] = DbOpt,
    blobs: Optional[str] = BlobsOpt,
    secure_cookies: bool = typer.Option(False, "--secure-cookies",
                                        help="Mark cookies Secure (HTTPS only): use it behind a TLS proxy"),
    packets: Optional[Path] = typer.Option(None, "--packets", help="Where takedown packets are written "
                                           "[default: 'packets' beside the blob store]"),
    takedown_config: Optional[Path] = typer.Option(None, "--takedown-config",
                                                   help="Takedown config YAML (sender, legal bases, platforms)"),
) -> None:
    """Serve the console (gallery, evidence, review, takedowns) and the JSON API (/api/docs)."""
    import uvicorn

    from console.app import create_app
    from evidence.takedown import TakedownError
    from storage.db import StorageError

    try:
        web = create_app(_db(db), _blobs(blobs), secure_cookies=secure_cookies,
                         packets_root=str(packets) if packets else None,
                         takedown_config=str(takedown_config) if takedown_config else None)
    except (StorageError, TakedownError, OSError, ValueError) as exc:
        _fail(str(exc))
    if not _is_loopback(host) and not secure_cookies:
        console.print("[bold yellow]warning:[/] listening beyond this machine without --secure-cookies: "
                      "serve it behind HTTPS and pass --secure-cookies, or session cookies travel in clear text")
    store = web.state.console.store
    console.print(f"deepwatch console on http://{host}:{port}/ (database {store.redacted_url}); "
                  "create accounts with the user commands first", highlight=False)
    # server_header off: no version banner for scanners; proxy headers trusted from loopback only.
    uvicorn.run(web, host=host, port=port, server_header=False, proxy_headers=True,
                forwarded_allow_ips="127.0.0.1", log_level="info")
