"""`segcli serve`: the engine as an HTTP service (Starlette + uvicorn) with a web page."""

from segcli.serve.app import ServeSettings, build_app

__all__ = ["ServeSettings", "build_app"]
