"""`segcli serve`: the engine as an HTTP service (Starlette + uvicorn) with a web page."""
