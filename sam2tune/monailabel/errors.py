"""HTTP errors the app raises on bad input: FastAPI turns them into 4xx responses and the server keeps serving."""

from __future__ import annotations

from fastapi import HTTPException


def bad_request(msg: str) -> HTTPException:
    """400 with `msg` as the detail (the client sees it verbatim)."""
    return HTTPException(status_code=400, detail=msg)


def not_found(msg: str) -> HTTPException:
    """404 with `msg` as the detail."""
    return HTTPException(status_code=404, detail=msg)


def unprocessable(msg: str) -> HTTPException:
    """422: the request is well formed but its content (an uploaded file) cannot be used."""
    return HTTPException(status_code=422, detail=msg)
