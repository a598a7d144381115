"""`cbir serve`: the search as a web page and a JSON API, served by uvicorn.

FastAPI and uvicorn are imported only when the command runs, so `cbir search` does not pay for them.
"""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from cbir import options as opt
from cbir.errors import CbirError

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one), or a one-line error."""
    if not 0 <= port <= 65535:
        raise CbirError(f"--port must be between 0 and 65535 (got {port})")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise CbirError(f"cannot listen on {host}: {exc.strerror or exc}; pass --host with an address of this machine") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise CbirError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pass another --port") from exc
    sock.set_inheritable(True)
    return sock


@app.command(cls=opt.OneLineCommand)
@opt.cli_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface; there is no authentication).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free one).")] = 8000,
    home: opt.Home = None,
    data_dir: opt.DataDir = None,
    dataset: opt.Dataset = None,
    encoder: opt.Encoder = None,
    model: opt.Model = None,
    qdrant_url: opt.QdrantUrl = None,
    qdrant_api_key: opt.QdrantApiKey = None,
    collection: opt.Collection = None,
    wait: opt.Wait = None,
) -> None:
    """Serve the search: a web page to draw or drop a digit (/), a JSON API (/api/...) and its OpenAPI docs (/docs)."""
    import logging

    import uvicorn

    from serve.app import create_app
    from serve.service import SearchService

    settings = opt.settings(home=home, data_dir=data_dir, dataset=dataset, encoder=encoder, model=model, qdrant_url=qdrant_url,
                            qdrant_api_key=qdrant_api_key, collection=collection, wait=wait)
    sock = bind(host, port)
    try:
        service = SearchService(settings)  # a collection that cannot be searched is a one-line error here
        info = service.info()
        shown = f"[{host}]" if ":" in host else host
        typer.echo(
            f"serving collection {info['collection']!r} ({info['points']} points, encoder {info['encoder']}) "
            f"at http://{shown}:{sock.getsockname()[1]}/ (API docs at /docs); Ctrl-C stops"
        )
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
        server = uvicorn.Server(uvicorn.Config(create_app(settings, service=service), log_level="info", lifespan="on"))
        server.run(sockets=[sock])  # the app closes the service at shutdown
    finally:
        sock.close()


def main() -> None:
    """Console-script entry point (for now: `python -c "from serve.cli import main; main()"`)."""
    app()
